"""Run the cluster simulation over many seeds: ``python -m tests.sim.runner --seeds 500``.

Seeds alternate between 3- and 5-node clusters; in every other pair of seeds (``kv_store_for``)
the nodes run the production key-value store and clients retry writes with idempotency keys.
``RAFTNODE_SIM_SEEDS`` sets the count and ``RAFTNODE_SIM_SEED`` (with ``RAFTNODE_SIM_SIZE``)
reruns one seed with its full trace.

``--compare`` runs every seed twice, with the core's fast leader-loss path off and on, and
prints per seed how many elections were won and how long the cluster went without a leader after
its leader crashed (simulated time). ``--flapping`` compares the same with no faults but a link
to the leader flapping about every ``1 / FLAP_RATE`` ticks (nothing passes for 1-6 ticks and both
ends are told the other is lost, as the real transport would never say of a live process): every
election after the first is one a flap caused. One link flaps at a time, unless
``--concurrent-flaps``: then flaps overlap, and two flapping links of a 3-node cluster's leader
look exactly like its death to the fast path. ``--leader-crashes`` compares with no faults but
the leader crashing about every ``1 / LEADER_CRASH_RATE`` ticks (restarted soon after), to time
failovers. Both runs of every seed must pass.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import statistics
import sys
import time
from dataclasses import dataclass, field

from tests.sim.cluster import Simulation

FLAP_RATE = 0.1
"""Per tick, in ``--flapping`` runs: a flap every 10 ticks (0.5 s) on average."""
LEADER_CRASH_RATE = 0.05
"""Per tick, in ``--leader-crashes`` runs: a leader crash every 20 ticks (1 s) on average."""


def size_for(seed: int) -> int:
    return 3 if seed % 2 == 0 else 5


def kv_store_for(seed: int) -> bool:
    """Whether a (default mode) seed runs the key-value store: half the seeds of each size."""
    return seed // 2 % 2 == 1


@dataclass
class SeedResult:
    seed: int
    size: int
    fast: bool
    steps: int = 0
    writes: int = 0
    reads: int = 0
    elections: int = 0
    flaps: int = 0
    fast_prevotes: int = 0
    failovers: list[float] = field(default_factory=list)
    kv_store: bool = False
    keyed_writes: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    sent_twice: int = 0
    duplicates: int = 0
    duplicates_across_terms: int = 0
    replayed_answers: int = 0
    dedup_from_snapshot: int = 0
    dedup_from_restart: int = 0
    kv_snapshots_installed: int = 0
    txns: int = 0
    txns_succeeded: int = 0
    lease_acks: int = 0
    compactions: int = 0
    leases_expired: int = 0
    error: str | None = None


def run_seed(args: tuple[int, int, bool, str]) -> SeedResult:
    """Run one seed; ``mode`` is "default", "flapping", "concurrent-flaps" or "leader-crashes"."""
    seed, size, fast, mode = args
    # The runtime logs elections, transfers and crashes as they happen: thousands of lines
    # per run. A failing seed reports the events that matter in its trace instead.
    logging.getLogger("raftnode").setLevel(logging.CRITICAL + 1)
    if mode == "default":
        sim = Simulation(seed, size=size, fast_leader_loss=fast, kv_store=kv_store_for(seed))
    elif mode == "leader-crashes":
        sim = Simulation(
            seed,
            size=size,
            fast_leader_loss=fast,
            flap_rate=0.0,
            other_faults=False,
            leader_crash_rate=LEADER_CRASH_RATE,
        )
    else:
        sim = Simulation(
            seed,
            size=size,
            fast_leader_loss=fast,
            flap_rate=FLAP_RATE,
            other_faults=False,
            concurrent_flaps=mode == "concurrent-flaps",
        )
    result = SeedResult(seed, size, fast)
    try:
        sim.run()
    except AssertionError as exc:
        result.error = str(exc)
    result.steps, result.writes, result.reads = sim.steps, sim.acked_writes, sim.served_reads
    result.elections = sim.elections
    result.flaps = sim.network.flaps
    result.fast_prevotes = sim.fast_prevotes
    result.failovers = sim.failover_seconds
    result.kv_store = sim.kv_dir is not None
    result.keyed_writes = sim.keyed_writes
    result.retries = sim.retries
    result.sent_twice = sim.sent_twice
    result.duplicates = len(sim.checker.exactly_once.duplicates)
    result.duplicates_across_terms = sim.duplicates_across_terms()
    result.replayed_answers = sim.checker.exactly_once.replayed_answers
    result.dedup_from_snapshot = sim.dedup_from_snapshot
    result.dedup_from_restart = sim.dedup_from_restart
    result.kv_snapshots_installed = sim.kv_snapshots_installed
    result.txns = sim.checker.txns.applied
    result.txns_succeeded = sim.checker.txns.succeeded
    result.lease_acks = sim.checker.leases.acks
    result.compactions = sim.compactions
    result.leases_expired = len(sim.checker.leases.expired_at)
    return result


def print_keyed_writes(results: list[SeedResult]) -> None:
    """What the key-value seeds put the exactly-once check through."""
    runs = [r for r in results if r.kv_store]
    if not runs:
        return
    retries: dict[str, int] = {}
    for r in runs:
        for kind, n in r.retries.items():
            retries[kind] = retries.get(kind, 0) + n
    print(
        f"key-value store: {len(runs)} runs, {sum(r.keyed_writes for r in runs)} keyed writes "
        f"(retries: {', '.join(f'{n} after {kind}' for kind, n in retries.items())}; "
        f"{sum(r.sent_twice for r in runs)} sent twice at once), "
        f"{sum(r.duplicates for r in runs)} duplicate entries committed and absorbed "
        f"({sum(r.duplicates_across_terms for r in runs)} in a later term than the first; "
        f"{sum(r.dedup_from_snapshot for r in runs)} by a node that got the first outcome in "
        f"a snapshot, {sum(r.dedup_from_restart for r in runs)} after a restart), "
        f"{sum(r.replayed_answers for r in runs)} replayed answers, "
        f"{sum(r.kv_snapshots_installed for r in runs)} store snapshots installed; "
        f"{sum(r.txns for r in runs)} transactions applied ({sum(r.txns_succeeded for r in runs)} "
        "took their success branch), each atomic at one revision; "
        f"{sum(r.leases_expired for r in runs)} leases expired through the log, none before "
        f"its TTL from the last of {sum(r.lease_acks for r in runs)} grants and keep-alives "
        f"answered; {sum(r.compactions for r in runs)} history compactions on command, each "
        "decided alike on every node"
    )


def _ms(values: list[float]) -> str:
    if not values:
        return "none"
    return (
        f"median {statistics.median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms "
        f"over {len(values)}"
    )


def print_comparison(results: list[SeedResult]) -> None:
    by_seed: dict[int, dict[bool, SeedResult]] = {}
    for r in results:
        by_seed.setdefault(r.seed, {})[r.fast] = r
    print("seed size  elections(fast off)  elections(fast on)")
    for seed in sorted(by_seed):
        off, on = by_seed[seed][False], by_seed[seed][True]
        print(f"{seed:4d} {off.size:4d}  {off.elections:19d}  {on.elections:18d}")
    for fast in (False, True):
        runs = [r for r in results if r.fast is fast]
        elections = [r.elections for r in runs]
        failovers = [f for r in runs for f in r.failovers]
        print(
            f"fast leader-loss {'on ' if fast else 'off'}: {sum(elections)} elections over "
            f"{len(runs)} seeds (mean {statistics.mean(elections):.2f} per seed)"
            f", {sum(r.flaps for r in runs)} link flaps, "
            f"{sum(r.fast_prevotes for r in runs)} fast pre-vote requests; "
            "leader crash to new leader: "
            f"{_ms(failovers)}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=int(os.environ.get("RAFTNODE_SIM_SEEDS", 500)))
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--compare", action="store_true", help="run each seed with fast leader-loss off and on"
    )
    parser.add_argument(
        "--flapping",
        action="store_true",
        help="--compare, with links to the leader flapping and no other faults",
    )
    parser.add_argument(
        "--concurrent-flaps", action="store_true", help="with --flapping: let flaps overlap"
    )
    parser.add_argument(
        "--leader-crashes",
        action="store_true",
        help="--compare, with the leader crashing now and then and no other faults",
    )
    args = parser.parse_args(argv)
    compare = args.compare or args.flapping or args.leader_crashes
    mode = "default"
    if args.flapping:
        mode = "concurrent-flaps" if args.concurrent_flaps else "flapping"
    elif args.leader_crashes:
        mode = "leader-crashes"

    single = os.environ.get("RAFTNODE_SIM_SEED")
    if single is not None:
        seed = int(single)
        seeds = [(seed, int(os.environ.get("RAFTNODE_SIM_SIZE", size_for(seed))))]
    else:
        seeds = [(s, size_for(s)) for s in range(args.start, args.start + args.seeds)]
    variants = (False, True) if compare else (True,)
    jobs = [(seed, size, fast, mode) for seed, size in seeds for fast in variants]

    started = time.monotonic()
    passed = failed = steps = writes = reads = 0
    failures: list[str] = []
    results: list[SeedResult] = []
    with multiprocessing.Pool(max(1, args.workers)) as pool:
        for r in pool.imap_unordered(run_seed, jobs, chunksize=4):
            results.append(r)
            steps += r.steps
            writes += r.writes
            reads += r.reads
            if r.error is None:
                passed += 1
            else:
                failed += 1
                failures.append(r.error)
                mode = f" (fast leader-loss {'on' if r.fast else 'off'})" if compare else ""
                print(f"FAILED seed {r.seed}{mode}", file=sys.stderr, flush=True)
    elapsed = time.monotonic() - started
    for failure in failures[:3]:
        print(failure, file=sys.stderr)
    if compare:
        print_comparison(results)
    print_keyed_writes(results)
    print(
        f"simulation: {len(jobs)} runs, {steps} steps ({steps // max(1, len(jobs))} per run), "
        f"{writes} acknowledged writes, {reads} linearizable/lease reads checked, "
        f"{elapsed:.1f} s"
    )
    print(f"sim: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
