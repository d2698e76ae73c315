"""``raftnode serve|check-config|status|member|leader|snapshot|kv``: the command line."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from raftnode import __version__
from raftnode.cli_admin import (
    DEFAULT_ENDPOINT,
    AdminError,
    Credentials,
    add_credentials,
    cluster_status,
    format_cluster_status,
)
from raftnode.cli_admin import add_commands as add_admin_commands
from raftnode.cli_kv import add_commands as add_kv_commands
from raftnode.cli_lease import add_commands as add_lease_commands
from raftnode.cli_snapshot import add_commands as add_snapshot_commands
from raftnode.config import ConfigError, load_config
from raftnode.tokens import Role, new_token, token_line


def _cmd_serve(args: argparse.Namespace) -> int:
    from raftnode.logs import configure_logging
    from raftnode.server import serve

    try:
        config = load_config(args.config)
    except ConfigError as e:
        for p in e.problems:
            print(f"config error: {p}", file=sys.stderr)
        return 1
    configure_logging(config.log.level, config.log.format, config.node_id)
    return serve(config)


def _cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file, credentials_dir=args.credentials_dir)
    except ConfigError as e:
        for p in e.problems:
            print(f"{args.file}: {p}", file=sys.stderr)
        return 1
    auth = config.auth
    access = f"tokens from {auth.token_file}" if auth.token_file else "no token file"
    anonymous = auth.anonymous_role.label if auth.anonymous_role else "none"
    print(
        f"{args.file}: ok (node {config.node_id} of {len(config.cluster)}, "
        f"client {config.listen_client}, health {config.listen_health}, peer {config.listen_peer}; "
        f"{'https' if config.tls else 'plain http'}, {access}, anonymous role {anonymous})"
    )
    return 0


def _cmd_token_create(args: argparse.Namespace) -> int:
    prefixes = args.prefix or []
    if any(not p for p in prefixes):
        print("raftnode: --prefix must not be empty (omit it for every key)", file=sys.stderr)
        return 1
    token = new_token()
    print(token)
    print(token_line(args.name, Role.parse(args.role), prefixes, token))
    print(
        "# first line: the token (give it to the client; it is not stored anywhere); second: "
        "the line for the token file (auth.token_file); then send the node SIGHUP, which "
        "re-reads the file without a restart",
        file=sys.stderr,
    )
    return 0


def _fetch_status(url: str, timeout: float, credentials: Credentials) -> dict[str, Any]:
    req = urllib.request.Request(url.rstrip("/") + "/status")
    with credentials.open(req, timeout) as resp:
        return json.loads(resp.read())


def format_status(status: dict[str, Any]) -> str:
    """A readable table of the cluster as one node sees it."""
    lines = [
        f"node {status['id']} ({status.get('name', '?')}): {status['role']}, "
        f"term {status['term']}, leader {status['leader'] or 'unknown'}",
        f"commit {status['commit']}  applied {status['applied']}  "
        f"last index {status['last_index']}  snapshot {status['snapshot_index']}  "
        f"keys {status.get('keys', '?')}",
        "",
    ]
    members = {m["id"]: m for m in status.get("members", [])}
    peers = {p["id"]: p for p in status.get("peers", [])}
    row = "{:>3}  {:<8} {:<9} {:<21} {:<21} {:<5} {:>8} {:>6}"
    lines.append(row.format("ID", "NAME", "ROLE", "CLIENT", "PEER", "CONN", "MATCH", "LAG"))
    ids = sorted(set(members) | set(peers) | {status["id"]})
    for i in ids:
        m = members.get(i, {})
        p = peers.get(i, {})
        if i == status["id"]:
            role, conn, match, lag = status["role"], "self", str(status["last_index"]), "-"
        else:
            role = (
                "leader"
                if i == status["leader"]
                else ("follower" if p.get("voter", True) else "learner")
            )
            conn = "up" if p.get("connected") else "down"
            match = str(p["match"]) if "match" in p else "-"
            lag = str(p["lag"]) if "lag" in p else "-"
        lines.append(
            row.format(
                i,
                m.get("name", "?"),
                role,
                m.get("client", "?"),
                m.get("peer", "?"),
                conn,
                match,
                lag,
            )
        )
    if status["role"] != "leader":
        lines.append("")
        lines.append(
            "(match and lag are known only on the leader: run `raftnode status` against it)"
        )
    return "\n".join(lines)


def _cmd_status(args: argparse.Namespace) -> int:
    if args.cluster:
        try:
            rows = cluster_status(args.endpoint, args.timeout, Credentials.from_args(args))
        except AdminError as e:
            print(f"raftnode: {e}", file=sys.stderr)
            return 1
        print(json.dumps(rows, indent=2) if args.json else format_cluster_status(rows))
        return 0 if all(r.get("healthy") for r in rows) else 2
    try:
        status = _fetch_status(args.url, args.timeout, Credentials.from_args(args))
    except (urllib.error.URLError, OSError, ValueError) as e:
        print(f"cannot read {args.url}/status: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print(format_status(status))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raftnode", description="A Raft key-value node.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run a node")
    p.add_argument("--config", "-c", required=True, help="the node's YAML config file")
    p.set_defaults(func=_cmd_serve)
    p = sub.add_parser("check-config", help="validate a config file (exit 0 when valid)")
    p.add_argument("file")
    p.add_argument(
        "--credentials-dir",
        type=Path,
        default=None,
        help="read TLS files the config names under /run/credentials/<unit>/ from this "
        "directory (the LoadCredential= sources: the unit has not copied them yet)",
    )
    p.set_defaults(func=_cmd_check_config)
    p = sub.add_parser("status", help="show the cluster as one node sees it")
    p.add_argument("--url", default="http://127.0.0.1:10001", help="the node's health listener")
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--json", action="store_true", help="print the raw /status JSON")
    p.add_argument(
        "--cluster",
        action="store_true",
        help="every member's own status, found through --endpoint (exit 2 if one is down)",
    )
    p.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help="with --cluster: a client API URL")
    add_credentials(p)
    p.set_defaults(func=_cmd_status)
    p = sub.add_parser("token", help="bearer tokens for the client API")
    tsub = p.add_subparsers(dest="token_command", required=True)
    p = tsub.add_parser(
        "create", help="print a new token and the line for the token file (its hash only)"
    )
    p.add_argument("--name", required=True, help="the principal: who uses the token")
    p.add_argument("--role", required=True, choices=[r.label for r in Role])
    p.add_argument(
        "--prefix",
        action="append",
        help="limit the token to keys starting with this (repeatable; default: every key)",
    )
    p.set_defaults(func=_cmd_token_create)
    add_admin_commands(sub)
    add_snapshot_commands(sub)
    add_kv_commands(sub)
    add_lease_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
