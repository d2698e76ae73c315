"""Inject one fault N times while a client writes through the VIP; print the distribution.

Standard library only; runs on the controller with the lab CLI (``python3 -m lab.raftlab``)
from the repository root. Every request goes to lab addresses, every wait has a bound.

    python3 fault_rounds.py leader-kill --lab NAME --raft n1=10.77.3.11,n2=...,n3=... \\
        --lb lb1=10.77.3.21,lb2=10.77.3.22 --vip 10.77.3.100 --rounds 10 --out rounds.json
    python3 fault_rounds.py during --vip 10.77.3.100 --out during.json -- COMMAND ARGS...

``during`` writes the same way while COMMAND runs (a rolling restart) and reports the failed
attempts, lost writes and the longest stall between two acknowledgements.

Faults, one per round, each undone before the next round:

- ``leader-kill``: SIGKILL the leader's raftnode process (systemd restarts it);
- ``leader-isolate``: cut the leader's host off the other lab hosts with nftables (the process
  keeps running), heal once writes resumed;
- ``lb-kill``: SIGKILL the balancer (``--balancer-unit``: haproxy, or nginx) on the VIP holder
  (systemd restarts it in place; the VIP stays).

A writer thread sends one write at a time through the VIP, each with its own
``Idempotency-Key`` (so HAProxy may retry it after a reset), sends a write that failed again
with the same key (what docs/operators-guide.md asks of an exactly-once client), and records
every attempt: ``failed`` counts the attempts that got no 200. A round's window is the
longest gap between two consecutive acknowledgements from the fault's injection until the
round ends: how long a client writing continuously got nothing acknowledged. At the end
every acknowledged write is read back (none may be lost).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lab_probe

FAULTS = ("leader-kill", "leader-isolate", "lb-kill")
CLIENT_PORT = 8081
VIP_PORT = 8080
# A new round starts only when the cluster has been healthy this long.
SETTLE_SECONDS = 1.0


@dataclass
class Ack:
    key: str
    value: str
    sent: float
    answered: float
    status: int
    error: str = ""
    """Why no HTTP answer came (status 0): the exception, to tell a refused or reset
    connection from a TLS verification failure or a timeout."""


@dataclass
class Writer:
    """Writes ``PREFIX-N`` keys through the VIP one after another until stopped."""

    vip: str
    prefix: str
    timeout: float = 2.0
    interval: float = 0.005
    results: list[Ack] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 5)

    def _run(self) -> None:
        """As an exactly-once client does: a write that got no answer or an error is sent
        again with the same key and value until one answer is 200."""
        n = 0
        key = value = ""
        acknowledged = True
        while not self._stop.is_set():
            if acknowledged:
                n += 1
                key, value = f"{self.prefix}-{n}", f"v{n}-{time.time():.3f}"
            sent = time.monotonic()
            status, error = keyed_write(self.vip, key, value, key, self.timeout)
            self.results.append(Ack(key, value, sent, time.monotonic(), status, error))
            acknowledged = status == 200
            time.sleep(self.interval)


def keyed_write(
    host: str, key: str, value: str, idempotency_key: str, timeout: float
) -> tuple[int, str]:
    """POST /kv with an Idempotency-Key on a new connection: (the status, ""), or (0, the
    error) when no answer came."""
    body = json.dumps({"key": key, "value": value})
    conn: http.client.HTTPConnection
    if lab_probe.SCHEME == "https":  # LAB_SCHEME / LAB_CA_FILE, as lab_probe's requests
        context = lab_probe.trust_context()
        conn = http.client.HTTPSConnection(host, VIP_PORT, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, VIP_PORT, timeout=timeout)
    try:
        conn.request(
            "POST",
            "/kv",
            body,
            {"Content-Type": "application/json", "Idempotency-Key": idempotency_key},
        )
        resp = conn.getresponse()
        resp.read()
        return resp.status, ""
    except OSError as e:
        return 0, repr(e)
    finally:
        conn.close()


def kill_main_process(unit: str) -> str:
    """A shell command that SIGKILLs the unit's main process. Not ``systemctl kill``: on
    cgroup-v1 hosts it can fail after the signal arrived, and never ``kill 0`` (MainPID 0).
    ``reset-failed`` first flushes the unit's start-rate counter (StartLimitBurst=5 in 120 s):
    the rounds kill the same node every few seconds, more often than any real crash, and a
    restart refused by that limit would stop the rounds rather than test failover."""
    return (
        f"systemctl reset-failed {unit} || true; "
        f"pid=$(systemctl show -p MainPID --value {unit}); "
        f'[ "${{pid:-0}}" -gt 1 ] && kill -s KILL "$pid"'
    )


@dataclass
class Lab:
    name: str
    raft: dict[str, str]
    lb: dict[str, str]
    vip: str
    balancer_unit: str = "haproxy"

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lab.raftlab", "--name", self.name, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def leader(self) -> str | None:
        address = lab_probe.leader(list(self.raft.values()))
        return next((h for h, a in self.raft.items() if a == address), None)

    def vip_holders(self) -> list[str]:
        holders = []
        for host in self.lb:
            out = self.cli("exec", host, "--", "ip", "-o", "-4", "addr", "show").stdout
            if f" {self.vip}/" in out:
                holders.append(host)
        return holders

    def all_ready(self) -> bool:
        return all(
            lab_probe.request(
                f"{lab_probe.node_url(a, lab_probe.HEALTH_PORT)}/readiness", timeout=1.0
            )[0]
            == 200
            for a in self.raft.values()
        )


def wait_until(what: str, check: Any, timeout: float, interval: float = 0.1) -> float:
    """Poll ``check()`` until true; the seconds it took. Raises after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


def healthy(lab: Lab, fault: str) -> bool:
    if fault == "lb-kill":
        is_active = ["systemctl", "is-active", "--quiet", lab.balancer_unit]
        return len(lab.vip_holders()) == 1 and all(
            lab.cli("exec", h, "--", *is_active).returncode == 0 for h in lab.lb
        )
    return lab.all_ready() and lab.leader() is not None


def inject(lab: Lab, fault: str) -> dict[str, Any]:
    """Inject the fault; what was hit."""
    if fault == "lb-kill":
        holders = lab.vip_holders()
        assert len(holders) == 1, f"VIP held by {holders}"
        target, unit = holders[0], lab.balancer_unit
    else:
        leader = lab.leader()
        assert leader, "no leader before the fault"
        target, unit = leader, "raftnode"
    if fault == "leader-isolate":
        done = lab.cli("isolate", target)
    else:
        done = lab.cli("exec", target, "--", "sh", "-c", kill_main_process(unit))
    return {"target": target, "rc": done.returncode}


def recover(lab: Lab, fault: str, target: str, timeout: float) -> None:
    """Undo the fault (heal) and wait until the cluster is whole again."""
    if fault == "leader-isolate":
        others = {h: a for h, a in lab.raft.items() if h != target}
        wait_until(
            "a leader among the majority",
            lambda: lab_probe.leader(list(others.values())) is not None,
            timeout,
        )
        lab.cli("heal")
    wait_until(f"healthy after {fault} on {target}", lambda: healthy(lab, fault), timeout)


def window_after(acks: list[Ack], start: float, end: float) -> tuple[float, int, dict[str, int]]:
    """(longest gap between acknowledgements in [start, end], failed writes, their codes)."""
    in_round = [a for a in acks if start <= a.answered <= end]
    ok_times = [a.answered for a in in_round if a.status == 200]
    previous = [a.answered for a in acks if a.answered < start and a.status == 200]
    times = previous[-1:] + ok_times
    gaps = [b - a for a, b in itertools.pairwise(times)]
    codes: dict[str, int] = {}
    for a in in_round:
        if a.status != 200:
            codes[str(a.status)] = codes.get(str(a.status), 0) + 1
    return (max(gaps) if gaps else end - start), sum(codes.values()), codes


def run_rounds(lab: Lab, fault: str, rounds: int, round_seconds: float) -> dict[str, Any]:
    prefix = f"rounds-{fault}-{int(time.time())}"
    writer = Writer(lab.vip, prefix)
    records: list[dict[str, Any]] = []
    writer.start()
    try:
        wait_until("the cluster healthy before the first round", lambda: healthy(lab, fault), 60)
        for n in range(1, rounds + 1):
            time.sleep(SETTLE_SECONDS)
            start = time.monotonic()
            hit = inject(lab, fault)
            # The round lasts at least round_seconds, and until the writes resumed.
            time.sleep(round_seconds)
            wait_until(
                "a write acknowledged after the fault",
                lambda since=start: any(a.status == 200 and a.sent > since for a in writer.results),
                30,
            )
            end = time.monotonic()
            window, failed, codes = window_after(writer.results, start, end)
            recover(lab, fault, hit["target"], 60)
            record = {
                "round": n,
                "target": hit["target"],
                "window_ms": round(window * 1000, 1),
                "failed": failed,
                "codes": codes,
            }
            records.append(record)
            print(json.dumps(record), file=sys.stderr, flush=True)
    finally:
        writer.stop()
        if fault == "leader-isolate":
            lab.cli("heal")
    acked = {a.key: a.value for a in writer.results if a.status == 200}
    lost = lost_writes(lab, prefix, acked)
    windows = [r["window_ms"] for r in records]
    return {
        "fault": fault,
        "rounds": records,
        "median_ms": round(statistics.median(windows), 1),
        "max_ms": max(windows),
        "writes": len(writer.results),
        "acknowledged": len(acked),
        "failed": sum(r["failed"] for r in records),
        "lost": lost,
    }


def write_during(vip: str, command: list[str], timeout: float) -> dict[str, Any]:
    """Write through the VIP while ``command`` runs (e.g. a rolling restart); the failed
    attempts, lost writes and the longest stall between two acknowledgements."""
    prefix = f"during-{int(time.time())}"
    writer = Writer(vip, prefix)
    writer.start()
    started = time.monotonic()
    try:
        time.sleep(SETTLE_SECONDS)
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        time.sleep(SETTLE_SECONDS)
    finally:
        writer.stop()
    results = writer.results
    stall, failed, codes = window_after(results, started, time.monotonic())
    acked = {a.key: a.value for a in results if a.status == 200}
    lab = Lab("", {}, {}, vip)
    return {
        "command_rc": done.returncode,
        "command_tail": (done.stdout + done.stderr).strip().splitlines()[-15:],
        "seconds": round(time.monotonic() - started, 1),
        "writes": len(results),
        "acknowledged": len(acked),
        "failed": failed,
        "codes": codes,
        "longest_stall_ms": round(stall * 1000, 1),
        "lost": lost_writes(lab, prefix, acked),
        # When each attempt without a 200 was sent (wall clock, to place it in the command's log).
        "failures": [
            {
                "key": a.key,
                "status": a.status,
                "error": a.error,
                "sent_at": round(wall(a.sent), 3),
                "answered_after_ms": round((a.answered - a.sent) * 1000, 1),
            }
            for a in results
            if a.status != 200
        ],
    }


def wall(monotonic: float) -> float:
    """A monotonic instant as wall-clock seconds since the epoch."""
    return time.time() - (time.monotonic() - monotonic)


def lost_writes(lab: Lab, prefix: str, acked: dict[str, str]) -> list[str]:
    """Acknowledged keys that do not read back with their value through the VIP."""
    deadline = time.monotonic() + 60
    while True:
        status, stored = lab_probe.list_prefix(lab_probe.node_url(lab.vip, VIP_PORT), prefix + "-")
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status == 200, f"could not list the written keys (HTTP {status})"
    return sorted(k for k, v in acked.items() if stored.get(k) != v)


def check_rounds_report(fault: str, median_bound_ms: float, max_bound_ms: float) -> dict[str, Any]:
    """For a scenario's verify tests: the side effect's rounds-FAULT.json ran every round,
    lost nothing, and its windows stay within the (generous) bounds. Prints the figures."""
    report: dict[str, Any] = json.loads(lab_probe.ephemeral(f"rounds-{fault}.json").read_text())
    windows = [r["window_ms"] for r in report["rounds"]]
    print(
        f"{fault}: {len(windows)} rounds, median {report['median_ms']} ms, max "
        f"{report['max_ms']} ms, windows {windows}; {report['failed']} failed attempts, "
        f"{len(report['lost'])} lost of {report['acknowledged']} acknowledged"
    )
    assert len(windows) >= 10, report["rounds"]
    assert report["lost"] == [], report["lost"]
    assert report["median_ms"] < median_bound_ms, windows
    assert report["max_ms"] < max_bound_ms, windows
    return report


def parse_hosts(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split(",") if item)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["during"]:
        return main_during(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fault", choices=FAULTS)
    parser.add_argument("--lab", required=True, help="the lab's name (lab.raftlab --name)")
    parser.add_argument("--raft", required=True, help="n1=ADDRESS,n2=ADDRESS,...")
    parser.add_argument("--lb", required=True, help="lb1=ADDRESS,lb2=ADDRESS")
    parser.add_argument("--vip", required=True)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--round-seconds", type=float, default=2.0, help="at least, per round")
    parser.add_argument("--out", required=True, help="the full JSON report")
    parser.add_argument(
        "--balancer-unit", default="haproxy", help="the balancer's systemd unit (lb-kill)"
    )
    args = parser.parse_args(argv)
    lab = Lab(args.lab, parse_hosts(args.raft), parse_hosts(args.lb), args.vip, args.balancer_unit)
    report = run_rounds(lab, args.fault, min(args.rounds, 50), args.round_seconds)
    Path(args.out).write_text(json.dumps(report, indent=1))
    summary = {k: v for k, v in report.items() if k != "rounds"}
    summary["windows_ms"] = [r["window_ms"] for r in report["rounds"]]
    json.dump(summary, sys.stdout)
    print()
    return 0


def main_during(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fault_rounds.py during")
    parser.add_argument("--vip", required=True)
    parser.add_argument("--timeout", type=float, default=900.0, help="for the command")
    parser.add_argument("--out", required=True, help="the JSON report")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    report = write_during(args.vip, command, min(args.timeout, 1800.0))
    Path(args.out).write_text(json.dumps(report, indent=1))
    json.dump(report, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
