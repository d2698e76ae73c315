#!/usr/bin/env python3
"""Put one server back into every backend that lists it, DOWN until its own checks find it up.

    haproxy_server_ready.py [--socket /run/haproxy/admin.sock] SERVER

HAProxy's "enable server" starts a checked server UP the moment it leaves maintenance and
checks it afterwards. A follower put back into the write backends after its restart then took
writes until its first check failed (tens of milliseconds), and the failed check cut those
sessions (on-marked-down shutdown-sessions): the client got its connection closed without an
answer. This leaves maintenance through drain instead (checks resume, no new requests), forces
the health down, then makes the server ready: it takes requests once its checks pass (rise).

A backend where the server is neither in maintenance nor drained is left alone, so running this
twice changes nothing (nor does a name no backend lists, as "enable server" would not either).
Prints {"changed": [backends]}; exits 1, naming the problem, when HAProxy cannot be reached or
refuses a command. Standard library only: it runs on the balancer
(roles/haproxy/tasks/server_state.yml sends it with ansible.builtin.script).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys

TIMEOUT_SECONDS = 5.0
# srv_admin_state and srv_check_state bits of "show servers state" (HAProxy's server.h, check.h).
FORCED_MAINT = 0x01
FORCED_DRAIN = 0x08
CHECK_CONFIGURED = 0x02


class CliError(Exception):
    pass


def cli(path: str, command: str) -> str:
    """One command line on HAProxy's admin socket (non-interactive: it closes after answering)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(TIMEOUT_SECONDS)
            conn.connect(path)
            conn.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
    except OSError as e:
        raise CliError(f"cannot talk to HAProxy on {path}: {e}") from e
    return b"".join(chunks).decode(errors="replace")


def servers_state(path: str) -> list[dict[str, str]]:
    """One dict per server from "show servers state" (a version line, a header line, a row per
    server), keyed by the header's names."""
    lines = cli(path, "show servers state").splitlines()
    if len(lines) < 2 or not lines[1].startswith("# "):
        raise CliError(f"unexpected answer to 'show servers state': {lines[:2]!r}")
    header = lines[1][2:].split()
    return [dict(zip(header, line.split(), strict=False)) for line in lines[2:] if line.strip()]


def listed_in(path: str, server: str) -> list[tuple[str, int, bool]]:
    """(backend, admin state bits, whether it has a health check) for each backend listing
    ``server``."""
    return [
        (
            row["be_name"],
            int(row["srv_admin_state"]),
            bool(int(row["srv_check_state"]) & CHECK_CONFIGURED),
        )
        for row in servers_state(path)
        if row.get("srv_name") == server
    ]


def put_back(path: str, server: str) -> list[str]:
    """The backends where ``server`` was out of rotation and is now back in."""
    changed = []
    for backend, admin, checked in listed_in(path, server):
        if not admin & (FORCED_MAINT | FORCED_DRAIN):
            continue
        target = f"{backend}/{server}"
        steps = [f"set server {target} state drain"]
        if checked:
            steps.append(f"set server {target} health down")
        steps.append(f"set server {target} state ready")
        answer = cli(path, "; ".join(steps))
        if answer.strip():  # HAProxy answers these commands with empty lines when they succeed
            raise CliError(f"HAProxy refused to put {target} back: {answer.strip()}")
        changed.append(backend)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", default="/run/haproxy/admin.sock", help="the admin socket")
    parser.add_argument("server", help="the server's name in the backends")
    args = parser.parse_args(argv)
    try:
        changed = put_back(args.socket, args.server)
    except CliError as e:
        print(f"haproxy_server_ready: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"changed": changed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
