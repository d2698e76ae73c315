"""Append and compact a million entries through the consensus core (and the WAL).

``python -m bench.log_append [--entries N] [--batch B] [--no-wal]``

A single-voter leader proposes batches of 100-byte entries; each Ready is persisted (one fsync
per batch, unless ``--no-wal``), applied, and every ``--compact-every`` entries the log is
snapshotted and compacted in both the core and the WAL. The rate of the first and last tenth shows
whether appends slow down as the log grows: they must not (no whole-log copies or scans).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

from raftnode.raft import HardState, RaftConfig, RaftCore, Role, Snapshot
from raftnode.storage import RaftStorage


def run(entries: int, batch: int, compact_every: int, use_wal: bool, data_dir: str) -> None:
    bootstrap = RaftCore.bootstrap_entries([1])
    storage = RaftStorage.open(data_dir) if use_wal else None
    if storage is not None:
        storage.persist(bootstrap, HardState(term=1, commit=1))
    core = RaftCore(
        RaftConfig(node_id=1, compaction_retain=1000),
        rng=random.Random(1),
        hard_state=HardState(term=1, commit=1),
        entries=bootstrap,
    )
    now = 0.0
    while core.role is not Role.LEADER:
        now += 0.05
        core.tick(now)
    payload = bytes(100)
    tenth = max(1, entries // 10)
    marks: list[float] = []
    done = 0
    last_snapshot = 0
    compactions = 0
    started = time.perf_counter()
    while done < entries:
        n = min(batch, entries - done)
        core.propose_many([payload] * n)
        while core.has_ready():
            rd = core.ready()
            if storage is not None and (rd.entries or rd.hard_state is not None):
                storage.persist(rd.entries, rd.hard_state)
            core.advance(rd)
        done += n
        if core.applied_index - last_snapshot >= compact_every:
            snapshot = Snapshot(core.snapshot_meta(core.applied_index), b"state")
            core.compact(snapshot)
            if storage is not None:
                storage.save_snapshot(snapshot)
            last_snapshot = core.applied_index
            compactions += 1
        while len(marks) < done // tenth:
            marks.append(time.perf_counter())
    elapsed = time.perf_counter() - started
    if storage is not None:
        storage.close()
    first = tenth / (marks[0] - started)
    last = tenth / (marks[-1] - marks[-2]) if len(marks) >= 2 else first
    print(
        f"log_append: {entries} entries in batches of {batch}, "
        f"{'WAL fsync per batch' if use_wal else 'core only'}, {compactions} compactions"
    )
    print(f"  overall      {entries / elapsed:>10,.0f} entries/s ({elapsed:.1f} s)")
    print(f"  first tenth  {first:>10,.0f} entries/s")
    print(f"  last tenth   {last:>10,.0f} entries/s  (last/first = {last / first:.2f})")
    rates = [tenth / (b - a) for a, b in zip([started, *marks], marks, strict=False)]
    print("  each tenth   " + " ".join(f"{r / 1000:.0f}k" for r in rates))
    print(f"  log in memory at the end: {core.last_index - core.log.offset} entries")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--compact-every", type=int, default=100_000)
    parser.add_argument("--no-wal", action="store_true", help="measure the core alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="raftnode-bench-") as data_dir:
        run(args.entries, args.batch, args.compact_every, not args.no_wal, data_dir)


if __name__ == "__main__":
    main()
