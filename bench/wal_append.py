"""Write-ahead log append throughput, with periodic snapshots and segment removal.

    python -m bench.wal_append [--entries 1000000] [--batch 1000] [--payload 100]

Appends ``--entries`` entries in ``--batch``-sized ``persist`` calls (one group-commit fsync each)
to a fresh data directory in a temporary directory, saves a snapshot and drops covered segments
every ``--compact-every`` entries, then reopens the directory to time recovery. Prints entries/s
overall and for the first and last 10% of the entries (a growing log must not slow appends), and
fsyncs per persist call.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from raftnode.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from raftnode.storage import FileSystem, RaftStorage


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=1_000_000, help="entries to append")
    parser.add_argument("--batch", type=int, default=1000, help="entries per persist call")
    parser.add_argument("--payload", type=int, default=100, help="bytes of data per entry")
    parser.add_argument("--compact-every", type=int, default=100_000, help="entries per snapshot")
    parser.add_argument("--segment-mb", type=int, default=64, help="segment size in MiB")
    parser.add_argument(
        "--dir", type=Path, default=None, help="parent directory (default: a temp dir)"
    )
    args = parser.parse_args()
    for name in ("entries", "batch", "payload", "compact_every", "segment_mb"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def run(args: argparse.Namespace, parent: Path) -> None:
    fs = FileSystem()
    data_dir = parent / "node"
    storage = RaftStorage.open(data_dir, fs=fs, segment_bytes=args.segment_mb << 20)
    payload = b"v" * args.payload
    conf = ConfState(frozenset({1, 2, 3}))
    tenth = max(args.entries // 10, 1)
    persist_seconds = first_seconds = last_seconds = 0.0
    first_count = last_count = persist_calls = persist_fsyncs = snapshots = 0
    next_snapshot = args.compact_every
    wall_start = time.perf_counter()
    index = 0
    while index < args.entries:
        count = min(args.batch, args.entries - index)
        entries = [Entry(1, i, data=payload) for i in range(index + 1, index + count + 1)]
        fsyncs_before = fs.fsync_count
        started = time.perf_counter()
        storage.persist(entries, HardState(term=1, vote=1, commit=index))
        elapsed = time.perf_counter() - started
        persist_fsyncs += fs.fsync_count - fsyncs_before
        persist_calls += 1
        persist_seconds += elapsed
        if index < tenth:
            first_seconds += elapsed
            first_count += count
        if index + count > args.entries - tenth:
            last_seconds += elapsed
            last_count += count
        index += count
        if index >= next_snapshot:
            storage.save_snapshot(Snapshot(SnapshotMeta(index, 1, conf), b"s" * 4096))
            snapshots += 1
            next_snapshot += args.compact_every
    wall = time.perf_counter() - wall_start
    segments = len(list((data_dir / "wal").glob("*.wal")))
    storage.close()

    started = time.perf_counter()
    with RaftStorage.open(data_dir, segment_bytes=args.segment_mb << 20) as reopened:
        remaining = len(reopened.entries())
    recovery = time.perf_counter() - started

    print(
        f"entries={args.entries} batch={args.batch} payload={args.payload}B "
        f"segment={args.segment_mb}MiB snapshots={snapshots}"
    )
    print(
        f"overall            {args.entries / wall:>12,.0f} entries/s  ({wall:.2f} s wall, "
        f"incl. entry construction and snapshots)"
    )
    print(
        f"persist only       {args.entries / persist_seconds:>12,.0f} entries/s  "
        f"({persist_seconds:.2f} s in persist)"
    )
    print(f"first 10%          {first_count / first_seconds:>12,.0f} entries/s")
    print(f"last 10%           {last_count / last_seconds:>12,.0f} entries/s")
    print(
        f"fsyncs per persist {persist_fsyncs / persist_calls:>12.3f}  "
        f"({persist_fsyncs} over {persist_calls} calls; "
        "extra: hard state on term change, segment roll-overs, the runway laid a MiB at a time)"
    )
    print(f"segments left      {segments:>12}")
    print(f"recovery           {recovery:>12.2f} s  ({remaining:,} entries after the snapshot)")


def main() -> None:
    args = parse_args()
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wal-bench-", dir=args.dir) as parent:
        run(args, Path(parent))


if __name__ == "__main__":
    main()
