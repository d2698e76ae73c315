"""A client that writes and reads through the VIP for the whole membership scenario.

    traffic.py run http://10.77.3.100:8080 --ops ops.jsonl --stop-file stop --max-seconds 600
    traffic.py mark steps.jsonl grow begin
    traffic.py report --ops ops.jsonl --steps steps.jsonl --out report.json

``run`` writes key m-N, and after each acknowledged write reads it back (the default,
linearizable read); every operation goes to ``--ops`` as one JSON line as it completes. It
stops when the stop file appears or after ``--max-seconds``, whichever comes first, so a
scenario that dies leaves no client behind for long. ``mark`` records the start and end of
a scenario step; ``report`` gives each step its write-unavailability window (the longest time
without an acknowledged write) and counts reads that did not return the acknowledged value.
Standard library only; the requests come from lab_probe (molecule/shared on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from lab_probe import request

PREFIX = "m-"
HARD_LIMIT_S = 900.0


def run(
    url: str, ops: Path, stop_file: Path, max_seconds: float, interval: float, timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + min(max_seconds, HARD_LIMIT_S)
    tag = f"{os.getpid()}-{int(time.time())}"
    counts = {"writes": 0, "acked": 0, "reads": 0, "bad_reads": 0}
    n = 0
    with ops.open("a", buffering=1) as out:
        while time.monotonic() < deadline and not stop_file.exists():
            n += 1
            key, value = f"{PREFIX}{n}", f"{tag}-{n}"
            sent = time.time()
            status = request(f"{url}/kv", "POST", {"key": key, "value": value}, timeout)[0]
            out.write(
                json.dumps(
                    {
                        "op": "w",
                        "key": key,
                        "value": value,
                        "t0": sent,
                        "t": time.time(),
                        "status": status,
                    }
                )
                + "\n"
            )
            counts["writes"] += 1
            if status == 200:
                counts["acked"] += 1
                sent = time.time()
                rstatus, _, body = request(f"{url}/kv/{key}", timeout=timeout)
                got = _value(body) if rstatus == 200 else None
                # 200 with another value, or 404 for an acknowledged key: a stale read.
                bad = (rstatus == 200 and got != value) or rstatus == 404
                out.write(
                    json.dumps(
                        {
                            "op": "r",
                            "key": key,
                            "t0": sent,
                            "t": time.time(),
                            "status": rstatus,
                            "bad": bad,
                        }
                    )
                    + "\n"
                )
                counts["reads"] += 1
                counts["bad_reads"] += int(bad)
            time.sleep(interval)
    return counts


def _value(body: bytes) -> Any:
    try:
        return json.loads(body).get("value")
    except (ValueError, AttributeError):
        return None


def mark(steps: Path, name: str, event: str) -> dict[str, Any]:
    entry = {"step": name, "event": event, "t": time.time()}
    with steps.open("a") as out:
        out.write(json.dumps(entry) + "\n")
    return entry


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def report(ops_path: Path, steps_path: Path) -> dict[str, Any]:
    ops = _lines(ops_path)
    writes = [o for o in ops if o["op"] == "w"]
    reads = [o for o in ops if o["op"] == "r"]
    acks = sorted(o["t"] for o in writes if o["status"] == 200)
    bounds: dict[str, dict[str, float]] = {}
    for entry in _lines(steps_path):
        bounds.setdefault(entry["step"], {})[entry["event"]] = entry["t"]
    steps = []
    for name, b in bounds.items():
        if "begin" not in b or "end" not in b:
            continue
        begin, end = b["begin"], b["end"]
        before = [t for t in acks if t < begin]
        inside = [t for t in acks if begin <= t <= end]
        # Gaps between consecutive acknowledgements, from the last one before the step (or
        # the step's start), and from the last one to the step's end.
        marks = (before[-1:] or [begin]) + inside
        gaps = [later - earlier for earlier, later in itertools.pairwise(marks)]
        gaps.append(end - marks[-1])
        in_step = [o for o in writes if begin <= o["t0"] <= end]
        codes: dict[str, int] = {}
        for o in in_step:
            codes[str(o["status"])] = codes.get(str(o["status"]), 0) + 1
        steps.append(
            {
                "step": name,
                "seconds": round(end - begin, 3),
                "writes": len(in_step),
                "acked": sum(1 for o in in_step if o["status"] == 200),
                "codes": codes,
                "window_ms": round(max(gaps) * 1000, 1),
                "bad_reads": sum(1 for o in reads if begin <= o["t0"] <= end and o["bad"]),
            }
        )
    return {
        "writes": len(writes),
        "acked": {o["key"]: o["value"] for o in writes if o["status"] == 200},
        "reads": len(reads),
        "reads_ok": sum(1 for o in reads if o["status"] == 200 and not o["bad"]),
        "bad_reads": [o for o in reads if o["bad"]],
        "steps": steps,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("url")
    p.add_argument("--ops", type=Path, required=True)
    p.add_argument("--stop-file", type=Path, required=True)
    p.add_argument("--max-seconds", type=float, default=600.0)
    p.add_argument("--interval", type=float, default=0.01)
    p.add_argument("--timeout", type=float, default=2.0, help="per request")
    p.add_argument("--pid-file", type=Path)
    p = sub.add_parser("mark")
    p.add_argument("steps", type=Path)
    p.add_argument("name")
    p.add_argument("event", choices=["begin", "end"])
    p = sub.add_parser("report")
    p.add_argument("--ops", type=Path, required=True)
    p.add_argument("--steps", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "run":
        if args.pid_file:
            args.pid_file.write_text(f"{os.getpid()}\n")
        out: Any = run(
            args.url, args.ops, args.stop_file, args.max_seconds, args.interval, args.timeout
        )
    elif args.command == "mark":
        out = mark(args.steps, args.name, args.event)
    else:
        full = report(args.ops, args.steps)
        args.out.write_text(json.dumps(full, indent=1))
        out = {k: v for k, v in full.items() if k != "acked"}
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
