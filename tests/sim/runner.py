"""Run the cluster simulation over many seeds: ``python -m tests.sim.runner --seeds 500``.

Seeds alternate between 3- and 5-node clusters. ``RAFTNODE_SIM_SEEDS`` sets the count and
``RAFTNODE_SIM_SEED`` (with ``RAFTNODE_SIM_SIZE``) reruns one seed with its full trace.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import time

from tests.sim.cluster import Simulation


def size_for(seed: int) -> int:
    return 3 if seed % 2 == 0 else 5


def run_seed(args: tuple[int, int]) -> tuple[int, int, int, int, int, str | None]:
    seed, size = args
    # The runtime logs elections, transfers and crashes as they happen: thousands of lines
    # per run. A failing seed reports the events that matter in its trace instead.
    logging.getLogger("raftnode").setLevel(logging.CRITICAL + 1)
    sim = Simulation(seed, size=size)
    try:
        sim.run()
    except AssertionError as exc:
        return seed, size, sim.steps, sim.acked_writes, sim.served_reads, str(exc)
    return seed, size, sim.steps, sim.acked_writes, sim.served_reads, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=int(os.environ.get("RAFTNODE_SIM_SEEDS", 500)))
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    single = os.environ.get("RAFTNODE_SIM_SEED")
    if single is not None:
        seed = int(single)
        size = int(os.environ.get("RAFTNODE_SIM_SIZE", size_for(seed)))
        jobs = [(seed, size)]
    else:
        jobs = [(s, size_for(s)) for s in range(args.start, args.start + args.seeds)]

    started = time.monotonic()
    passed = failed = steps = writes = reads = 0
    failures: list[str] = []
    with multiprocessing.Pool(max(1, args.workers)) as pool:
        for seed, _size, n_steps, n_writes, n_reads, error in pool.imap_unordered(
            run_seed, jobs, chunksize=4
        ):
            steps += n_steps
            writes += n_writes
            reads += n_reads
            if error is None:
                passed += 1
            else:
                failed += 1
                failures.append(error)
                print(f"FAILED seed {seed}", file=sys.stderr, flush=True)
    elapsed = time.monotonic() - started
    for failure in failures[:3]:
        print(failure, file=sys.stderr)
    print(
        f"simulation: {len(jobs)} seeds, {steps} steps ({steps // max(1, len(jobs))} per seed), "
        f"{writes} acknowledged writes, {reads} linearizable/lease reads checked, "
        f"{elapsed:.1f} s"
    )
    print(f"sim: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
