"""Controller-side probes for the raftnode Molecule scenarios (standard library only).

Every request goes to a lab address the scenario created, and every loop is bounded by a
deadline. Used by the scenarios' side_effect playbooks (as a script printing JSON) and by
their testinfra tests (imported).

    python3 lab_probe.py leader 10.77.0.11 10.77.0.12 10.77.0.13
    python3 lab_probe.py write-until-ok http://10.77.0.100:8080 --key k --timeout 30
    python3 lab_probe.py write-once http://10.77.0.100:8080 --key k --timeout 10
    python3 lab_probe.py write-servers http://10.77.0.21:8404
    python3 lab_probe.py read http://10.77.0.11:8081 --key k --consistency stale
    python3 lab_probe.py write-loop http://10.77.0.100:8080 --duration 15 --out loop.json
    python3 lab_probe.py poll-status http://10.77.0.11:10001/primary --while-status 200 --run CMD...
    python3 lab_probe.py converged 10.77.0.11 10.77.0.12 10.77.0.13 --timeout 30
    python3 lab_probe.py backend-servers http://10.77.0.21:8404
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEALTH_PORT = 10001
# http (the default) or https: how the scenario's nodes and VIP serve (default sets https, with
# LAB_CA_FILE the cluster's CA bundle, in its molecule.yml; the other scenarios stay plaintext).
SCHEME = os.environ.get("LAB_SCHEME", "http")
CA_FILE = os.environ.get("LAB_CA_FILE") or None


class _TrustStore:
    """An SSL context trusting LAB_CA_FILE, re-read when the file changes: a CA rotation
    (playbooks/rotate-certs.yml) rewrites the bundle on the controller, as an operator hands
    the new bundle to the clients before the servers move to the new CA."""

    def __init__(self) -> None:
        self._mark: tuple[float, int] | None = None
        self._context: ssl.SSLContext | None = None

    def context(self) -> ssl.SSLContext | None:
        if CA_FILE is None:
            return None
        try:
            st = os.stat(CA_FILE)
        except OSError:
            return self._context
        mark = (st.st_mtime, st.st_size)
        if mark != self._mark:
            try:
                self._context = ssl.create_default_context(cafile=CA_FILE)
                self._mark = mark
            except (OSError, ssl.SSLError):
                pass  # half-written: keep the previous one, retry next time
        return self._context


_TRUST = _TrustStore()


def trust_context() -> ssl.SSLContext | None:
    """The context that trusts LAB_CA_FILE as it is now (None without one)."""
    return _TRUST.context()


def node_url(address: str, port: int) -> str:
    return f"{SCHEME}://{address}:{port}"


# The lab's HAProxy stats reader (test values only; the inventories' haproxy_stats_users holds
# its hash): the stats page and /metrics answer 401 without it.
STATS_USER = "lab-stats"
STATS_PASSWORD = "lab-stats-password-not-for-production"


def stats_auth_header() -> dict[str, str]:
    token = base64.b64encode(f"{STATS_USER}:{STATS_PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@dataclass(frozen=True)
class Lab:
    """The scenario's hosts by group (name -> address), read from Molecule's inventory."""

    raft: dict[str, str]
    lb: dict[str, str]

    @property
    def vip(self) -> str:
        """The lab reserves offset .100 of its subnet for the VIP."""
        first_lb = next(iter(self.lb.values()))
        return first_lb.rsplit(".", 1)[0] + ".100"

    @property
    def vip_url(self) -> str:
        return node_url(self.vip, 8080)

    def stats_url(self, lb: str) -> str:
        return f"http://{self.lb[lb]}:8404"


def load_lab() -> Lab:
    out = subprocess.run(
        ["ansible-inventory", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "--list"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    data = json.loads(out)
    hostvars = data["_meta"]["hostvars"]

    def group(name: str) -> dict[str, str]:
        return {h: hostvars[h]["ansible_host"] for h in data.get(name, {}).get("hosts", [])}

    return Lab(raft=group("raft"), lb=group("lb"))


def ephemeral(name: str) -> Path:
    """A file a scenario's side_effect wrote into Molecule's ephemeral directory."""
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / name


def request(
    url: str,
    method: str = "GET",
    body: dict[str, Any] | None = None,
    timeout: float = 3.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body); status 0 when no HTTP answer came."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        context = _TRUST.context() if url.startswith("https:") else None
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return resp.status, _lower(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, _lower(e.headers.items()), e.read()
    except (OSError, urllib.error.URLError):
        return 0, {}, b""


def _lower(items: Any) -> dict[str, str]:
    """Header names are case-insensitive (HAProxy sends retry-after, Tornado Retry-After)."""
    return {name.lower(): value for name, value in items}


def primary_codes(addresses: list[str], port: int = HEALTH_PORT) -> dict[str, int]:
    return {a: request(f"{node_url(a, port)}/primary", timeout=2.0)[0] for a in addresses}


def leader(addresses: list[str], port: int = HEALTH_PORT) -> str | None:
    """The one address whose /primary answers 200, or None (none, or more than one)."""
    winners = [a for a, code in primary_codes(addresses, port).items() if code == 200]
    return winners[0] if len(winners) == 1 else None


def write(base_url: str, key: str, value: str, timeout: float) -> dict[str, Any]:
    started = time.monotonic()
    status, headers, _ = request(
        f"{base_url}/kv", "POST", {"key": key, "value": value}, timeout=timeout
    )
    return {
        "status": status,
        "seconds": round(time.monotonic() - started, 3),
        "retry_after": headers.get("retry-after"),
    }


def write_until_ok(
    base_url: str, key: str, timeout: float, interval: float = 0.05
) -> dict[str, Any]:
    """Write key=attempt-N until one answer is 200 or the deadline passes."""
    started_at = time.time()
    started = time.monotonic()
    deadline = started + timeout
    codes: dict[str, int] = {}
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        status = write(base_url, key, f"attempt-{attempt}", timeout=min(6.0, timeout))["status"]
        codes[str(status)] = codes.get(str(status), 0) + 1
        if status == 200:
            return {
                "ok": True,
                "started_at": started_at,
                "seconds": round(time.monotonic() - started, 3),
                "attempts": attempt,
                "codes": codes,
                "value": f"attempt-{attempt}",
            }
        time.sleep(interval)
    return {
        "ok": False,
        "started_at": started_at,
        "seconds": round(time.monotonic() - started, 3),
        "attempts": attempt,
        "codes": codes,
    }


def write_loop(
    base_url: str,
    duration: float,
    interval: float = 0.005,
    timeout: float = 2.0,
    prefix: str = "loop-",
) -> dict[str, Any]:
    """Write distinct keys (prefix + n) one after another for ``duration`` seconds.

    Each write waits for its answer (at most ``timeout``), then the loop sleeps ``interval``.
    The unavailability window is the longest interval between the acknowledgements (200
    answers) of two consecutive successful writes: a client writing continuously got no
    write acknowledged for that long.
    """
    run = f"{os.getpid()}-{int(time.time() * 1000)}"
    started_at = time.time()
    t0 = time.monotonic()
    deadline = t0 + duration
    codes: dict[str, int] = {}
    acked: dict[str, str] = {}
    writes: list[dict[str, Any]] = []
    last_ok: float | None = None
    window = 0.0
    window_from = window_to = None
    first_failure = last_failure = None
    n = 0
    while time.monotonic() < deadline:
        n += 1
        key, value = f"{prefix}{n}", f"{run}-{n}"
        sent = time.monotonic() - t0
        status = request(f"{base_url}/kv", "POST", {"key": key, "value": value}, timeout)[0]
        answered = time.monotonic() - t0
        codes[str(status)] = codes.get(str(status), 0) + 1
        writes.append({"key": key, "sent": round(sent, 4), "status": status})
        if status == 200:
            acked[key] = value
            if last_ok is not None and answered - last_ok > window:
                window, window_from, window_to = answered - last_ok, last_ok, answered
            last_ok = answered
        else:
            if first_failure is None:
                first_failure = sent
            last_failure = sent
        time.sleep(interval)
    return {
        "started_at": started_at,
        "duration_s": round(time.monotonic() - t0, 3),
        "total": n,
        "acked_count": len(acked),
        "codes": codes,
        "window_ms": round(window * 1000, 1),
        "window_from_s": None if window_from is None else round(window_from, 3),
        "window_to_s": None if window_to is None else round(window_to, 3),
        "first_failure_s": None if first_failure is None else round(first_failure, 3),
        "last_failure_s": None if last_failure is None else round(last_failure, 3),
        "acked": acked,
        "writes": writes,
    }


def poll_status(
    url: str,
    while_status: int,
    timeout: float,
    interval: float = 0.05,
    command: list[str] | None = None,
) -> dict[str, Any]:
    """Run ``command`` (if any), then poll ``url`` until it stops answering ``while_status``.

    ``seconds`` counts from the start of the command, ``seconds_after_command`` from its end.
    """
    started_at = time.time()
    t0 = time.monotonic()
    command_rc, command_output = None, ""
    if command:  # its output goes into the result: stdout must stay one JSON document
        done = subprocess.run(command, timeout=60, check=False, capture_output=True, text=True)
        command_rc, command_output = done.returncode, (done.stdout + done.stderr).strip()
    t1 = time.monotonic()
    deadline = t1 + timeout
    polls = 0
    status = while_status
    while time.monotonic() < deadline:
        polls += 1
        status = request(url, timeout=min(2.0, timeout))[0]
        if status != while_status:
            break
        time.sleep(interval)
    now = time.monotonic()
    return {
        "changed": status != while_status,
        "status": status,
        "started_at": started_at,
        "command_rc": command_rc,
        "command_output": command_output,
        "command_seconds": round(t1 - t0, 3),
        "seconds": round(now - t0, 3),
        "seconds_after_command": round(now - t1, 3),
        "polls": polls,
    }


def status_of(address: str, port: int = HEALTH_PORT) -> dict[str, Any] | None:
    status, _, body = request(f"{node_url(address, port)}/status", timeout=2.0)
    return json.loads(body) if status == 200 else None


def converged(
    addresses: list[str], timeout: float, port: int = HEALTH_PORT, stable: float = 1.0
) -> dict[str, Any]:
    """Wait until every node reports the same commit and applied index, one leader, for
    ``stable`` seconds in a row."""
    started = time.monotonic()
    deadline = started + timeout
    since: float | None = None
    statuses: dict[str, Any] = {}
    while time.monotonic() < deadline:
        statuses = {a: status_of(a, port) for a in addresses}
        ok = all(statuses.values())
        if ok:
            marks = {(s["commit"], s["applied"], s["term"], s["leader"]) for s in statuses.values()}
            roles = sorted(s["role"] for s in statuses.values())
            ok = len(marks) == 1 and roles.count("leader") == 1
        if ok:
            since = since or time.monotonic()
            if time.monotonic() - since >= stable:
                break
        else:
            since = None
        time.sleep(0.1)
    done = since is not None and time.monotonic() - since >= stable
    return {
        "ok": done,
        "seconds": round(time.monotonic() - started, 3),
        "status": {
            a: None
            if s is None
            else {k: s[k] for k in ("role", "term", "leader", "commit", "applied")}
            for a, s in statuses.items()
        },
    }


def read_key(
    base_url: str, key: str, consistency: str | None = None, timeout: float = 5.0
) -> tuple[int, str | None, float]:
    """(status, value or None, seconds) of GET /kv/KEY."""
    query = f"?consistency={consistency}" if consistency else ""
    started = time.monotonic()
    status, _, body = request(
        f"{base_url}/kv/{urllib.parse.quote(key, safe='')}{query}", timeout=timeout
    )
    value = json.loads(body).get("value") if status == 200 else None
    return status, value, round(time.monotonic() - started, 3)


MAX_LIST_PAGES = 100


def list_prefix(
    base_url: str, prefix: str, consistency: str | None = None, timeout: float = 10.0
) -> tuple[int, dict[str, str]]:
    """(status, {key: value}) of every key under ``prefix``: GET /kv?prefix=...&limit=10000,
    page after page (``start_after`` the last key) while ``more`` (bounded)."""
    found: dict[str, str] = {}
    query = {"prefix": prefix, "limit": "10000"}
    if consistency:
        query["consistency"] = consistency
    for _ in range(MAX_LIST_PAGES):
        url = f"{base_url}/kv?{urllib.parse.urlencode(query)}"
        status, _, body = request(url, timeout=timeout)
        if status != 200:
            return status, {}
        data = json.loads(body)
        found.update((item["key"], item["value"]) for item in data["items"])
        if not data["more"]:
            return status, found
        query["start_after"] = data["items"][-1]["key"]
    raise AssertionError(f"more than {MAX_LIST_PAGES} pages of keys under {prefix!r}")


def write_servers(stats_url: str) -> list[str]:
    """Names of the non-backup servers HAProxy has UP in write_backend (from the stats CSV)."""
    status, _, body = request(f"{stats_url}/stats;csv", timeout=2.0, headers=stats_auth_header())
    if status != 200:
        return []
    rows = csv.DictReader(io.StringIO(body.decode().lstrip("# ")))
    return [
        r["svname"]
        for r in rows
        if r["pxname"] == "write_backend"
        and r["svname"] not in ("FRONTEND", "BACKEND")
        and r.get("bck") == "0"
        and r["status"].startswith("UP")
    ]


def backend_servers(stats_url: str) -> dict[str, dict[str, str]]:
    """Every backend's servers as HAProxy lists them (stats CSV): backend -> {server: status}."""
    status, _, body = request(f"{stats_url}/stats;csv", timeout=2.0, headers=stats_auth_header())
    if status != 200:
        return {}
    out: dict[str, dict[str, str]] = {}
    for r in csv.DictReader(io.StringIO(body.decode().lstrip("# "))):
        if r["svname"] not in ("FRONTEND", "BACKEND"):
            out.setdefault(r["pxname"], {})[r["svname"]] = r["status"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("leader")
    p.add_argument("addresses", nargs="+")
    p = sub.add_parser("write-until-ok")
    p.add_argument("url")
    p.add_argument("--key", required=True)
    p.add_argument("--timeout", type=float, default=30.0)
    p = sub.add_parser("write-once")
    p.add_argument("url")
    p.add_argument("--key", required=True)
    p.add_argument("--value", default="v")
    p.add_argument("--timeout", type=float, default=10.0)
    p = sub.add_parser("write-servers")
    p.add_argument("stats_url")
    p = sub.add_parser("read")
    p.add_argument("url")
    p.add_argument("--key", required=True)
    p.add_argument("--consistency")
    p.add_argument("--timeout", type=float, default=10.0)
    p = sub.add_parser("write-loop")
    p.add_argument("url")
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--interval", type=float, default=0.005)
    p.add_argument("--timeout", type=float, default=2.0, help="per request")
    p.add_argument("--prefix", default="loop-")
    p.add_argument("--out", help="write the full JSON here and print a summary")
    p = sub.add_parser("poll-status")
    p.add_argument("url")
    p.add_argument("--while-status", type=int, default=200)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument("--run", nargs=argparse.REMAINDER, help="a command to run first (last option)")
    p = sub.add_parser("backend-servers")
    p.add_argument("stats_url")
    p = sub.add_parser("converged")
    p.add_argument("addresses", nargs="+")
    p.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)

    if args.command == "leader":
        out: Any = {"leader": leader(args.addresses), "primary": primary_codes(args.addresses)}
    elif args.command == "write-until-ok":
        out = write_until_ok(args.url, args.key, args.timeout)
    elif args.command == "write-once":
        out = write(args.url, args.key, args.value, args.timeout)
    elif args.command == "read":
        status, value, seconds = read_key(args.url, args.key, args.consistency, args.timeout)
        out = {"status": status, "value": value, "seconds": seconds}
    elif args.command == "write-loop":
        args.duration = min(args.duration, 120.0)
        out = write_loop(args.url, args.duration, args.interval, args.timeout, args.prefix)
        if args.out:
            Path(args.out).write_text(json.dumps(out, indent=1))
            out = {k: v for k, v in out.items() if k not in ("acked", "writes")}
    elif args.command == "poll-status":
        out = poll_status(args.url, args.while_status, args.timeout, args.interval, args.run)
    elif args.command == "converged":
        out = converged(args.addresses, args.timeout)
    elif args.command == "backend-servers":
        out = backend_servers(args.stats_url)
    else:
        out = write_servers(args.stats_url)
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
