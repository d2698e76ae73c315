"""Writes through ``raftnode.client`` for a bounded time, as wrk would send them: the client side
of ``make bench-client`` (run in its own process, like wrk, so its CPU shows as the client's).

    python -m bench.client_load --mode sync|async --endpoints URL[,URL...] \
        --connections 64 --seconds 10 --keys 10000 --value-bytes 100

``sync``: one ``Client`` shared by ``--connections`` threads. ``async``: one ``AsyncClient``
with ``--connections`` tasks. Each sends ``put("bench-N", "x" * value_bytes)`` with a random N,
the request bench/wrk/kv.lua sends (plus the client's idempotency key), until the time is up.
Prints one line ``CLIENT-JSON {...}`` in the shape of kv.lua's ``WRK-JSON`` line.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.wrkrun import WrkError, WrkResult, parse_wrk_output
from raftnode.client import AsyncClient, Client, ClientError, RetryPolicy

REPO = Path(__file__).resolve().parent.parent

MARKER = "CLIENT-JSON "
POLICY = RetryPolicy(timeout=5.0, attempt_timeout=5.0)
"""As wrk's --timeout=5s: a call that takes longer counts as an error."""


@dataclass(frozen=True, slots=True)
class ClientLoadResult(WrkResult):
    """wrk's figures, plus the CPU the client process spent per acknowledged write (user and
    system, every thread): the client's own cost, whatever the cluster's speed."""

    cpu_us_per_ok: float = 0.0


@dataclass
class Tally:
    latencies_us: list[float] = field(default_factory=list)
    errors: int = 0
    cpu_s: float = 0.0

    def line(self, duration_s: float) -> str:
        lat = sorted(self.latencies_us)

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else 0.0

        data = {
            "duration_us": int(duration_s * 1e6),
            "requests": len(lat) + self.errors,
            "ok": len(lat),
            "non2xx": self.errors,
            "errors": {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0},
            "latency_us": {"p50": pct(50), "p90": pct(90), "p99": pct(99), "max": pct(100)},
            "cpu_us_per_ok": 1e6 * self.cpu_s / len(lat) if lat else 0.0,
        }
        return MARKER + json.dumps(data)


def run_sync(args: argparse.Namespace, value: str) -> tuple[Tally, float]:
    tally = Tally()
    lock = threading.Lock()
    client = Client(args.endpoints, retry=POLICY)
    start = time.perf_counter()
    end = start + args.seconds

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        mine: list[float] = []
        errors = 0
        while (t0 := time.perf_counter()) < end:
            try:
                client.put(f"bench-{rng.randrange(args.keys)}", value)
                mine.append((time.perf_counter() - t0) * 1e6)
            except ClientError:
                errors += 1
        with lock:
            tally.latencies_us += mine
            tally.errors += errors

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.seconds + 30)
    client.close()
    return tally, time.perf_counter() - start


async def run_async(args: argparse.Namespace, value: str) -> tuple[Tally, float]:
    tally = Tally()
    start = time.perf_counter()
    end = start + args.seconds
    async with AsyncClient(args.endpoints, retry=POLICY) as client:

        async def worker(seed: int) -> None:
            rng = random.Random(seed)
            while (t0 := time.perf_counter()) < end:
                try:
                    await client.put(f"bench-{rng.randrange(args.keys)}", value)
                    tally.latencies_us.append((time.perf_counter() - t0) * 1e6)
                except ClientError:
                    tally.errors += 1

        await asyncio.gather(*(worker(i) for i in range(args.connections)))
    return tally, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.client_load", description=__doc__)
    p.add_argument("--mode", choices=["sync", "async"], required=True)
    p.add_argument("--endpoints", required=True, help="comma-separated, the leader first")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--keys", type=int, default=10000)
    p.add_argument("--value-bytes", type=int, default=100)
    args = p.parse_args(argv)
    if not all(e.startswith("http://127.0.0.1:") for e in args.endpoints.split(",")):
        print("benchmarks only send traffic to 127.0.0.1", file=sys.stderr)
        return 2
    value = "x" * args.value_bytes
    cpu = time.process_time()
    if args.mode == "sync":
        tally, duration = run_sync(args, value)
    else:
        tally, duration = asyncio.run(run_async(args, value))
    tally.cpu_s = time.process_time() - cpu
    print(tally.line(duration), flush=True)
    return 0


def run_client_load(
    endpoints: list[str],
    mode: str,
    *,
    connections: int,
    seconds: float,
    keys: int = 10000,
    value_bytes: int = 100,
) -> ClientLoadResult:
    """One bounded run of this module in its own process; its result as wrk's, plus the
    client's CPU per write."""
    argv = [
        sys.executable,
        "-m",
        "bench.client_load",
        "--mode",
        mode,
        "--endpoints",
        ",".join(endpoints),
        "--connections",
        str(connections),
        "--seconds",
        str(seconds),
        "--keys",
        str(keys),
        "--value-bytes",
        str(value_bytes),
    ]
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=seconds + 60, check=False, cwd=REPO
        )
    except subprocess.TimeoutExpired as e:
        raise WrkError(f"the client load did not finish within {seconds + 60:.0f}s") from e
    if proc.returncode != 0:
        raise WrkError(f"client load exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    result = parse_wrk_output(proc.stdout, MARKER)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)][-1]
    cpu = float(json.loads(line[len(MARKER) :]).get("cpu_us_per_ok", 0.0))
    return ClientLoadResult(**dataclasses.asdict(result), cpu_us_per_ok=cpu)


if __name__ == "__main__":
    sys.exit(main())
