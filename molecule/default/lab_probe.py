"""Controller-side probes for the raftnode Molecule scenarios (standard library only).

Every request goes to a lab address the scenario created, and every loop is bounded by a
deadline. Used by the scenarios' side_effect playbooks (as a script printing JSON) and by
their testinfra tests (imported).

    python3 lab_probe.py leader 10.77.0.11 10.77.0.12 10.77.0.13
    python3 lab_probe.py write-until-ok http://10.77.0.100:8080 --key k --timeout 30
    python3 lab_probe.py write-once http://10.77.0.100:8080 --key k --timeout 10
    python3 lab_probe.py write-servers http://10.77.0.21:8404
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEALTH_PORT = 10001


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
        return f"http://{self.vip}:8080"

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
    url: str, method: str = "GET", body: dict[str, Any] | None = None, timeout: float = 3.0
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body); status 0 when no HTTP answer came."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, _lower(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, _lower(e.headers.items()), e.read()
    except (OSError, urllib.error.URLError):
        return 0, {}, b""


def _lower(items: Any) -> dict[str, str]:
    """Header names are case-insensitive (HAProxy sends retry-after, Tornado Retry-After)."""
    return {name.lower(): value for name, value in items}


def primary_codes(addresses: list[str], port: int = HEALTH_PORT) -> dict[str, int]:
    return {a: request(f"http://{a}:{port}/primary", timeout=2.0)[0] for a in addresses}


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
                "seconds": round(time.monotonic() - started, 3),
                "attempts": attempt,
                "codes": codes,
                "value": f"attempt-{attempt}",
            }
        time.sleep(interval)
    return {
        "ok": False,
        "seconds": round(time.monotonic() - started, 3),
        "attempts": attempt,
        "codes": codes,
    }


def write_servers(stats_url: str) -> list[str]:
    """Names of the non-backup servers HAProxy has UP in write_backend (from the stats CSV)."""
    status, _, body = request(f"{stats_url}/stats;csv", timeout=2.0)
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
    args = parser.parse_args(argv)

    if args.command == "leader":
        out: Any = {"leader": leader(args.addresses), "primary": primary_codes(args.addresses)}
    elif args.command == "write-until-ok":
        out = write_until_ok(args.url, args.key, args.timeout)
    elif args.command == "write-once":
        out = write(args.url, args.key, args.value, args.timeout)
    else:
        out = write_servers(args.stats_url)
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
