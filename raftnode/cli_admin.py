"""``raftnode member list|add|promote|remove``, ``raftnode leader transfer`` and ``raftnode compact
REV``: the admin API
(``/admin/v1`` on any node's client port) from the command line, as etcdctl does it."""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

DEFAULT_ENDPOINT = "http://127.0.0.1:8081"
TOKEN_ENV = "RAFTNODE_TOKEN"
CA_FILE_ENV = "RAFTNODE_CA_FILE"


@dataclass(frozen=True, slots=True)
class Credentials:
    """How the CLI proves itself and whom it trusts: a bearer token (``--token`` or
    ``$RAFTNODE_TOKEN``) and the CA of an HTTPS node (``--ca-file`` or ``$RAFTNODE_CA_FILE``)."""

    token: str | None = None
    ca_file: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Credentials:
        token = getattr(args, "token", None) or os.environ.get(TOKEN_ENV) or None
        ca_file = getattr(args, "ca_file", None) or os.environ.get(CA_FILE_ENV) or None
        return cls(token, ca_file)

    def scheme(self) -> str:
        return "https" if self.ca_file else "http"

    def open(self, req: urllib.request.Request, timeout: float) -> Any:
        """``urlopen`` with the token and (for https) a context that trusts only the CA."""
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        context = None
        if req.full_url.startswith("https:"):
            context = ssl.create_default_context(cafile=self.ca_file)
        return urllib.request.urlopen(req, timeout=timeout, context=context)


def add_credentials(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token", help=f"a bearer token (default: ${TOKEN_ENV})")
    p.add_argument(
        "--ca-file", help=f"the CA that signed the nodes' certificates (default: ${CA_FILE_ENV})"
    )


class AdminError(Exception):
    """The node refused the request or could not be reached; the message says why."""


def call(
    endpoint: str,
    method: str,
    path: str,
    body: Any,
    timeout: float,
    credentials: Credentials | None = None,
) -> dict[str, Any]:
    """One admin request; raises ``AdminError`` with the node's own error message."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(endpoint.rstrip("/") + "/admin/v1" + path, data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with (credentials or Credentials()).open(req, timeout) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
            return answer
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read()).get("message", "")
        except ValueError:
            detail = ""
        raise AdminError(f"{method} {path}: HTTP {e.code}: {detail or e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        raise AdminError(f"cannot reach {endpoint}: {e}") from e


def format_members(answer: dict[str, Any]) -> str:
    row = "{:>4}  {:<8} {:<6} {:<22} {:>10} {:>8}  {}"
    lines = [
        f"leader {answer.get('leader') or 'unknown'}, term {answer.get('term', '?')}, "
        f"config index {answer.get('config_index', '?')}",
        row.format("ID", "ROLE", "LEADER", "PEER", "MATCH", "LAG", "REACHABLE"),
    ]
    for m in answer["members"]:
        lines.append(
            row.format(
                m["id"],
                m["role"],
                "*" if m.get("leader") else "",
                m.get("peer") or "?",
                m.get("match", "-"),
                m.get("lag", "-"),
                {True: "yes", False: "NO"}.get(m.get("reachable"), "-"),
            )
        )
    return "\n".join(lines)


def cluster_status(
    endpoint: str, timeout: float, credentials: Credentials | None = None
) -> list[dict[str, Any]]:
    """Every member's own status, asked at each member's client address (found through the
    members list at ``endpoint``); a member that does not answer shows as unreachable."""
    credentials = credentials or Credentials()
    members = call(endpoint, "GET", "/members", None, timeout, credentials)["members"]
    rows: list[dict[str, Any]] = []
    for member in members:
        row: dict[str, Any] = {"id": member["id"], "membership": member["role"]}
        client = member.get("client")
        try:
            if not client:
                raise AdminError("client address unknown")
            url = f"{credentials.scheme()}://{client}"
            status = call(url, "GET", "/status", None, timeout, credentials)
            row.update(
                role=status["role"],
                term=status["term"],
                commit=status["commit"],
                applied=status["applied"],
                lag=status["lag"],
                healthy=status["healthy"],
                client=client,
            )
        except AdminError as e:
            row.update(client=client, healthy=False, error=str(e))
        rows.append(row)
    return rows


def format_cluster_status(rows: list[dict[str, Any]]) -> str:
    line = "{:>4}  {:<9} {:<10} {:>5} {:>10} {:>10} {:>6}  {:<8} {}"
    out = [
        line.format("ID", "MEMBER", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG", "HEALTH", "CLIENT")
    ]
    for r in rows:
        out.append(
            line.format(
                r["id"],
                r["membership"],
                r.get("role", "?"),
                r.get("term", "-"),
                r.get("commit", "-"),
                r.get("applied", "-"),
                r.get("lag", "-"),
                "ok" if r.get("healthy") else "DOWN",
                r.get("client") or "?",
            )
        )
    return "\n".join(out)


def _run(args: argparse.Namespace, method: str, path: str, body: Any) -> int:
    try:
        answer = call(args.endpoint, method, path, body, args.timeout, Credentials.from_args(args))
    except AdminError as e:
        print(f"raftnode: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer, indent=2))
    elif "compact_revision" in answer:
        done = "compacted" if answer.get("compacted") else "already compacted"
        print(
            f"{done}: history kept after revision {answer['compact_revision']} "
            f"(store at revision {answer['revision']})"
        )
    elif "members" in answer:
        if answer.get("op"):
            print(f"{answer['op']} {answer['id']}: done")
        print(format_members(answer))
    else:
        print(f"leader is now {answer.get('leader')} (term {answer.get('term')})")
    return 0


def _member_list(args: argparse.Namespace) -> int:
    return _run(args, "GET", "/members", None)


def _guarded(path: str, args: argparse.Namespace) -> str:
    """``path`` with ``?prev_index=`` when the operator gave ``--prev-index``."""
    return path if args.prev_index is None else f"{path}?prev_index={args.prev_index}"


def _member_add(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"id": args.id, "peer": args.peer}
    if args.client:
        body["client"] = args.client
    return _run(args, "POST", _guarded("/members", args), body)


def _member_promote(args: argparse.Namespace) -> int:
    return _run(args, "POST", _guarded(f"/members/{args.id}/promote", args), None)


def _member_remove(args: argparse.Namespace) -> int:
    return _run(args, "DELETE", _guarded(f"/members/{args.id}", args), None)


def _leader_transfer(args: argparse.Namespace) -> int:
    return _run(args, "POST", "/leader/transfer", {"to": args.to} if args.to else {})


def _compact(args: argparse.Namespace) -> int:
    return _run(args, "POST", "/compact", {"revision": args.revision})


def add_commands(sub: Any) -> None:
    """Add ``member``, ``leader`` and ``compact`` to the ``raftnode`` parser's subcommands."""

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help="any node's client API URL")
        p.add_argument("--timeout", type=float, default=15.0)
        p.add_argument("--json", action="store_true", help="print the raw JSON answer")
        add_credentials(p)

    def guarded(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--prev-index",
            type=int,
            default=None,
            help="refuse (409) unless the configuration is still at this config index "
            "(from `member list`)",
        )

    member = sub.add_parser("member", help="list, add, promote or remove cluster members")
    msub = member.add_subparsers(dest="member_command", required=True)
    p = msub.add_parser("list", help="every member as the leader sees it")
    common(p)
    p.set_defaults(func=_member_list)
    p = msub.add_parser("add", help="add a node as a learner (promoted once caught up)")
    p.add_argument("id", type=int, help="the new node's node_id")
    p.add_argument("--peer", required=True, help="its Raft peer address, host:port")
    p.add_argument("--client", help="its client API address, host:port (for forwarding)")
    common(p)
    guarded(p)
    p.set_defaults(func=_member_add)
    p = msub.add_parser("promote", help="make a caught-up learner a voter now")
    p.add_argument("id", type=int)
    common(p)
    guarded(p)
    p.set_defaults(func=_member_promote)
    p = msub.add_parser("remove", help="remove a member (the leader hands over first)")
    p.add_argument("id", type=int)
    common(p)
    guarded(p)
    p.set_defaults(func=_member_remove)
    leader = sub.add_parser("leader", help="move leadership")
    lsub = leader.add_subparsers(dest="leader_command", required=True)
    p = lsub.add_parser("transfer", help="to --to ID, or to the most caught-up voter")
    p.add_argument("--to", type=int, default=None)
    common(p)
    p.set_defaults(func=_leader_transfer)
    p = sub.add_parser(
        "compact", help="drop the change history up to REV (watches from before it get 410)"
    )
    p.add_argument("revision", type=int, metavar="REV", help="the revision to compact up to")
    common(p)
    p.set_defaults(func=_compact)
