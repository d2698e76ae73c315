"""The client's own cost: the same writes sent by wrk and by ``raftnode.client`` (sync and
asyncio), to the same 3-node cluster, alternating, ``--runs`` times; median and spread.

    python -m bench.client_bench --runs 3 --seconds 5 --connections 16,64 --out build/bench

Every write is ``POST /kv {"key": "bench-N", "value": 100 bytes}`` with a random N and its own
``Idempotency-Key`` (wrk: bench/wrk/kv.lua with ``keyed=1``; the client adds one by itself), to
the leader (the client is given the leader first and stays there). wrk is the ceiling: a C
program with 2 threads; the client rows run in one Python process (bench/client_load.py), so the
gap is what the client costs. Prints a table, writes client.txt and client.json under --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.client_load import ClientLoadResult, run_client_load
from bench.deps import ensure_commands
from bench.peers.raftnode import RaftnodeCluster
from bench.procs import ProcessGroup, install_sigterm
from bench.report import format_table
from bench.wrkrun import WrkResult, run_wrk

REPO = Path(__file__).resolve().parent.parent
SYSTEMS = ("wrk (keyed)", "client sync", "client async")


def spread(values: list[float]) -> str:
    """median (min-max)."""
    if not values:
        return "-"
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def leader_first(cluster: RaftnodeCluster) -> list[str]:
    leader = cluster.wait_leader()
    return [leader.client_url] + [n.client_url for n in cluster.nodes if n is not leader]


def runners(
    cluster: RaftnodeCluster, seconds: float, keys: int, value_bytes: int
) -> dict[str, Callable[[int], WrkResult]]:
    args = {
        "dialect": "raftnode",
        "mode": "write",
        "keys": str(keys),
        "value_bytes": str(value_bytes),
        "prefix": "bench-",
        "keyed": "1",
    }

    def wrk(connections: int) -> WrkResult:
        return run_wrk(
            cluster.leader_url(), connections=connections, seconds=seconds, script_args=args
        )

    def client(mode: str) -> Callable[[int], WrkResult]:
        def run(connections: int) -> WrkResult:
            return run_client_load(
                leader_first(cluster),
                mode,
                connections=connections,
                seconds=seconds,
                keys=keys,
                value_bytes=value_bytes,
            )

        return run

    return dict(zip(SYSTEMS, (wrk, client("sync"), client("async")), strict=True))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.client_bench", description=__doc__)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--connections", type=lambda s: [int(x) for x in s.split(",")], default=[16, 64])
    p.add_argument("--keys", type=int, default=10000)
    p.add_argument("--value-bytes", type=int, default=100)
    p.add_argument("--out", type=Path, default=REPO / "build" / "bench")
    args = p.parse_args(argv)
    install_sigterm()
    ensure_commands(["wrk"])
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[int, str], list[WrkResult]] = {}
    with ProcessGroup() as procs:
        work = Path(tempfile.mkdtemp(prefix="client-", dir=args.out))
        cluster = RaftnodeCluster(work / "raftnode", procs)
        print("starting raftnode", flush=True)
        cluster.start()
        run = runners(cluster, args.seconds, args.keys, args.value_bytes)
        for conns in args.connections:
            for n in range(args.runs):
                for system in SYSTEMS:
                    cluster.settle()
                    res = run[system](conns)
                    results.setdefault((conns, system), []).append(res)
                    print(
                        f"  c={conns} run {n + 1} {system:<13} {res.ok_per_s:8,.0f} ok/s  "
                        f"p50 {res.latency_ms('p50'):6.1f} ms  p99 {res.latency_ms('p99'):6.1f} ms"
                        f"  errors {res.errors}",
                        flush=True,
                    )
    rows = []
    for conns in args.connections:
        wrk_median = statistics.median(r.ok_per_s for r in results[(conns, SYSTEMS[0])])
        for system in SYSTEMS:
            rs = results[(conns, system)]
            rates = [r.ok_per_s for r in rs]
            cpu = [r.cpu_us_per_ok for r in rs if isinstance(r, ClientLoadResult)]
            rows.append(
                [
                    f"write leader c={conns}",
                    system,
                    spread(rates),
                    f"{statistics.median(r.latency_ms('p50') for r in rs):.1f}/"
                    f"{statistics.median(r.latency_ms('p99') for r in rs):.1f}",
                    f"{statistics.median(rates) / wrk_median:.2f}x" if wrk_median else "n/a",
                    spread(cpu) if cpu else "-",
                    str(sum(r.errors for r in rs)),
                ]
            )
    table = "\n".join(
        [
            f"{args.runs} runs of {args.seconds:g} s each, alternating; ok/s as median (min-max),",
            "latency medians of the runs; vs wrk: median over wrk's median; client CPU: the",
            "client process's user+system time per acknowledged write. One machine, noisy.",
            format_table(
                (
                    "row",
                    "sender",
                    "ok/s median (min-max)",
                    "p50/p99 ms",
                    "vs wrk",
                    "client CPU us/write",
                    "errors",
                ),
                rows,
            ),
        ]
    )
    print("\n" + table)
    (args.out / "client.txt").write_text(table + "\n")
    data = {
        "meta": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "runs": args.runs,
            "seconds": args.seconds,
        },
        "results": {
            f"{conns}/{system}": [r.to_json() for r in rs]
            for (conns, system), rs in results.items()
        },
    }
    (args.out / "client.json").write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
