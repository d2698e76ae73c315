"""What handing one job to the log's disk thread and back costs the event loop.

``python -m bench.disk_handoff [--jobs N] [--rounds R]``

Every node persists its log in a worker thread once per Ready, so this hand-off is on every
write's path. The bench awaits an empty job N times through ``loop.run_in_executor`` on a
one-thread ``ThreadPoolExecutor`` and through ``SerialWorker`` (the log's disk thread), on
uvloop as the nodes run, alternating R rounds, and prints microseconds of wall time and of
process CPU per round trip (the median round of each).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import uvloop

from raftnode.storage.serial_worker import SerialWorker


def _empty() -> None:
    return None


async def _measure(submit: Callable[[], Awaitable[None]], jobs: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(jobs):
        await submit()
    return (
        (time.perf_counter() - wall) / jobs * 1e6,
        (time.process_time() - cpu) / jobs * 1e6,
    )


async def _run(jobs: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=1)
    worker = SerialWorker("bench-disk")
    ways: dict[str, Callable[[], Awaitable[None]]] = {
        "ThreadPoolExecutor": lambda: loop.run_in_executor(pool, _empty),
        "SerialWorker": lambda: worker.run(_empty),
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    try:
        for _ in range(rounds):
            for name, submit in ways.items():
                results[name].append(await _measure(submit, jobs))
    finally:
        pool.shutdown(wait=True)
        worker.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = uvloop.run(_run(args.jobs, args.rounds))
    for name, rows in results.items():
        wall = statistics.median(r[0] for r in rows)
        cpu = statistics.median(r[1] for r in rows)
        spread = f"{min(r[1] for r in rows):.1f}-{max(r[1] for r in rows):.1f}"
        print(f"{name:20} {wall:6.1f} us wall, {cpu:6.1f} us CPU per round trip (CPU {spread})")


if __name__ == "__main__":
    main()
