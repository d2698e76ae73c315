"""What one durable log batch costs on this disk, the way the WAL wrote it before and now.

``python -m bench.disk_sync [--bytes B] [--batches N] [--rounds R] [--dir D]``

Each of 1 and then 3 writers (threads, as three nodes on one disk) writes N batches of B bytes
to its own file through ``raftnode.storage.FileSystem``, three ways, alternating R rounds:

- ``append+fsync``: the file grows with every batch, then ``fsync`` (the WAL before its runway);
- ``runway+fdatasync``: the batch overwrites zeros laid and fsynced ahead (``zero_fill``), then
  ``fdatasync``, which has no size or allocation to commit;
- ``runway+RWF_DSYNC``: the same in one ``pwritev`` call (``write_durably_at``: the WAL now).

Prints the median milliseconds per batch of each way (the median round) and the spread of the
round medians. Files go to ``--dir`` (default: a temporary directory under ``/var/tmp``, on
the disk rather than in memory) and are removed afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from raftnode.storage import FileSystem

Way = Callable[[Path, bytes, int], list[float]]


def _append_fsync(path: Path, batch: bytes, batches: int) -> list[float]:
    fs = FileSystem()
    f = fs.open(path, truncate=True)
    took = []
    try:
        for _ in range(batches):
            started = time.perf_counter()
            fs.write(f, batch)
            fs.fsync(f)
            took.append(time.perf_counter() - started)
    finally:
        fs.close(f)
    return took


def _runway(one_call: bool) -> Way:
    def run(path: Path, batch: bytes, batches: int) -> list[float]:
        fs = FileSystem()
        if not one_call:
            fs.dsync_flag = None
        f = fs.open_positional(path)
        took = []
        try:
            fs.zero_fill(f, 0, len(batch) * batches)
            for i in range(batches):
                started = time.perf_counter()
                fs.write_durably_at(f, i * len(batch), batch)
                took.append(time.perf_counter() - started)
        finally:
            fs.close(f)
        return took

    return run


WAYS: dict[str, Way] = {
    "append+fsync": _append_fsync,
    "runway+fdatasync": _runway(one_call=False),
    "runway+RWF_DSYNC": _runway(one_call=True),
}


def _round(way: Way, directory: Path, writers: int, batch: bytes, batches: int) -> float:
    """Median seconds per batch over every writer's batches."""
    took: list[float] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        path = directory / f"writer-{n}.wal"
        try:
            mine = way(path, batch, batches)
        finally:
            path.unlink(missing_ok=True)
        with lock:
            took.extend(mine)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    return statistics.median(took)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=20_000)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    batch = bytes(range(256)) * (args.bytes // 256) + bytes(args.bytes % 256)
    with tempfile.TemporaryDirectory(prefix="disk-sync-", dir=args.dir or "/var/tmp") as tmp:
        directory = Path(tmp)
        for writers in (1, 3):
            rounds: dict[str, list[float]] = {name: [] for name in WAYS}
            for _ in range(args.rounds):
                for name, way in WAYS.items():
                    rounds[name].append(_round(way, directory, writers, batch, args.batches))
            for name, medians in rounds.items():
                ms = [m * 1e3 for m in medians]
                print(
                    f"{writers} writer{'s' if writers > 1 else ' '} {args.bytes} B  {name:17}"
                    f" {statistics.median(ms):6.3f} ms per batch"
                    f" (rounds {min(ms):.3f}-{max(ms):.3f})"
                )


if __name__ == "__main__":
    main()
