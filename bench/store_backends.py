"""Compare key-value state machine backends: the SQLite store, the old dict store, LMDB.

``python -m bench.store_backends [--entries N] [--batch B] [--backends sqlite,memory,lmdb]``

Each backend runs in its own process (so its RSS is its own) and applies N 112-byte put
commands (unique keys in a scattered order, so the B-trees grow everywhere) in batches of B,
one transaction per batch, like the runtime. It prints:

- apply throughput per tenth of the run (must stay flat as the store grows);
- get throughput (random existing keys);
- snapshot time and size, and for the on-disk backends the writer's batch latency while a worker
  thread takes the snapshot (the loop must keep applying);
- for SQLite, how long the worker thread's ``sync()`` calls took (every 0.25 s, as the runtime
  would call it);
- open-to-ready time of a restart (the old store: restoring its JSON snapshot);
- RSS after the load and the peak.

LMDB is optional: ``python3 -m venv /tmp/lmdbvenv && /tmp/lmdbvenv/bin/pip install lmdb``; the
LMDB child runs under ``--lmdb-python`` (default ``/tmp/lmdbvenv/bin/python`` when it exists).
Run it under ``flock /tmp/raftnode-bench.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raftnode.kv.commands import Command

REPO = Path(__file__).resolve().parent.parent
COMMAND_BYTES = 112


def key_of(i: int) -> str:
    return f"key/{(i * 2654435761) & 0xFFFFFFFF:012d}"  # a bijection on 32 bits: unique keys


def command(i: int) -> bytes:
    k = key_of(i)
    base = len(Command("put", k, "").encode())
    data = Command("put", k, "v" * (COMMAND_BYTES - base)).encode()
    assert len(data) == COMMAND_BYTES
    return data


def rss_mib() -> tuple[float, float]:
    """Current and peak resident set size of this process, MiB."""
    current = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- adapters: the same calls for every backend ------------------------------------------------


class Backend:
    name = ""
    on_disk = True

    def apply(self, index: int, data: bytes) -> Any: ...
    def commit(self) -> None: ...
    def get(self, key: str) -> Any: ...
    def snapshot(self, dest: Path) -> int:
        """Write a snapshot; the file's size."""
        raise NotImplementedError

    def close(self) -> None: ...
    def reopen(self) -> None:
        """Close and open again (a restart), ready to serve."""


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, d: Path, snapshot_method: str = "backup") -> None:
        from raftnode.kv.store import KeyValueStore

        self.path = d / "kv.sqlite"
        self.cls = KeyValueStore
        self.store = KeyValueStore.open(self.path)
        self.method = snapshot_method
        self.apply = self.store.apply  # type: ignore[method-assign]
        self.commit = self.store.commit  # type: ignore[method-assign]
        self.get = self.store.get  # type: ignore[method-assign]

    def snapshot(self, dest: Path) -> int:
        return self.store.snapshot_to(dest, compact=self.method == "vacuum").size_bytes

    def start_syncer(self, every: float = 0.25) -> None:
        """What the runtime does: sync() from a worker thread now and then."""
        self.stop = threading.Event()
        self.sync_seconds: list[float] = []

        def loop() -> None:
            while not self.stop.wait(every):
                t0 = time.perf_counter()
                self.store.sync()
                self.sync_seconds.append(time.perf_counter() - t0)

        self.syncer = threading.Thread(target=loop, daemon=True)
        self.syncer.start()

    def stop_syncer(self) -> None:
        self.stop.set()
        self.syncer.join()

    def close(self) -> None:
        self.store.close()

    def reopen(self) -> None:
        self.store.close()
        self.__init__(self.path.parent, self.method)  # type: ignore[misc]


class MemoryBackend(Backend):
    name = "memory"
    on_disk = False

    def __init__(self, d: Path) -> None:
        from bench.memory_store import MemoryKeyValueStore

        self.cls = MemoryKeyValueStore
        self.store = MemoryKeyValueStore()
        self.apply = self.store.apply  # type: ignore[method-assign]
        self.get = self.store.get  # type: ignore[method-assign]
        self.snap = b""

    def snapshot(self, dest: Path) -> int:
        self.snap = self.store.snapshot()  # on the loop: the whole time blocks it
        dest.write_bytes(self.snap)
        return len(self.snap)

    def reopen(self) -> None:
        # The old restart: restore the last snapshot (then replay the log after it).
        self.store = self.cls()
        self.store.restore(self.snap)
        self.get = self.store.get  # type: ignore[method-assign]


class LmdbBackend(Backend):
    """The same semantics over LMDB: one write transaction per batch, meta in the same txn."""

    name = "lmdb"

    def __init__(self, d: Path, nosync: bool = False) -> None:
        import lmdb  # type: ignore[import-not-found,unused-ignore]

        self.dir = d / "lmdb"
        self.nosync = nosync
        self.name = "lmdb-nosync" if nosync else "lmdb"
        # metasync=False: one fsync per commit, a crash may undo the last commit (like
        # SQLite's NORMAL, which does not fsync at all per commit). sync=False: no fsync.
        self.env = lmdb.open(
            str(self.dir),
            map_size=64 << 30,
            subdir=True,
            metasync=False,
            sync=not nosync,
            max_dbs=2,
            readahead=False,
        )
        self.kv = self.env.open_db(b"kv")
        self.meta = self.env.open_db(b"meta")
        with self.env.begin(db=self.meta) as txn:
            raw = txn.get(b"m")
        self.applied, self.revision = struct.unpack("<QQ", raw) if raw else (0, 0)
        self.txn: Any = None

    def apply(self, index: int, data: bytes) -> Any:
        if self.txn is None:
            self.txn = self.env.begin(write=True)
        cmd = Command.decode(data)
        kb = cmd.key.encode()
        old = self.txn.get(kb, db=self.kv)
        self.revision += 1
        create = struct.unpack_from("<Q", old)[0] if old is not None else self.revision
        assert cmd.value is not None
        self.txn.put(kb, struct.pack("<QQ", create, self.revision) + cmd.value.encode(), db=self.kv)
        self.applied = index
        return old

    def commit(self) -> None:
        if self.txn is not None:
            self.txn.put(b"m", struct.pack("<QQ", self.applied, self.revision), db=self.meta)
            self.txn.commit()
            self.txn = None

    def get(self, key: str) -> Any:
        with self.env.begin(db=self.kv) as txn:
            return txn.get(key.encode())

    def snapshot(self, dest: Path) -> int:
        dest.mkdir()
        self.env.copy(str(dest), compact=True)
        return sum(p.stat().st_size for p in dest.iterdir())

    def close(self) -> None:
        self.env.close()

    def reopen(self) -> None:
        self.env.close()
        self.__init__(self.dir.parent, self.nosync)  # type: ignore[misc]


# -- the measurements --------------------------------------------------------------------------


def apply_batches(b: Backend, start: int, count: int, batch: int) -> list[float]:
    """Apply ``count`` puts from index ``start``; the seconds each batch took."""
    lat = []
    for lo in range(start, start + count, batch):
        t0 = time.perf_counter()
        for i in range(lo, min(lo + batch, start + count)):
            b.apply(i + 1, command(i))
        b.commit()
        lat.append(time.perf_counter() - t0)
    return lat


def snapshot_while_applying(
    b: Backend, dest: Path, start: int, batch: int
) -> tuple[float, int, list[float]]:
    """Snapshot in a worker thread while this thread keeps applying: time, size, batch latency."""
    out: dict[str, Any] = {}

    def work() -> None:
        t0 = time.perf_counter()
        out["size"] = b.snapshot(dest)
        out["seconds"] = time.perf_counter() - t0

    t = threading.Thread(target=work)
    t.start()
    lat: list[float] = []
    i = start
    while t.is_alive():
        lat += apply_batches(b, i, batch, batch)
        i += batch
    t.join()
    return out["seconds"], out["size"], lat


def child(backend: str, entries: int, batch: int, workdir: Path) -> dict[str, Any]:
    factories: dict[str, Callable[[Path], Backend]] = {
        "sqlite": SqliteBackend,
        "sqlite-vacuum": lambda d: SqliteBackend(d, "vacuum"),
        "memory": MemoryBackend,
        "lmdb": LmdbBackend,
        "lmdb-nosync": lambda d: LmdbBackend(d, nosync=True),
    }
    b = factories[backend](workdir)
    res: dict[str, Any] = {"backend": backend, "entries": entries, "batch": batch}
    if isinstance(b, SqliteBackend):
        b.start_syncer()
    tenth = max(batch, entries // 10)
    rates = []
    all_lat: list[float] = []
    for lo in range(0, entries, tenth):
        n = min(tenth, entries - lo)
        t0 = time.perf_counter()
        all_lat += apply_batches(b, lo, n, batch)
        rates.append(round(n / (time.perf_counter() - t0)))
    res["apply_per_s_by_tenth"] = rates
    res["batch_ms_p50"] = round(statistics.median(all_lat) * 1000, 3)
    res["batch_ms_max"] = round(max(all_lat) * 1000, 2)
    rng = random.Random(7)
    probes = [key_of(rng.randrange(entries)) for _ in range(50_000)]
    t0 = time.perf_counter()
    for k in probes:
        assert b.get(k) is not None
    res["get_per_s"] = round(len(probes) / (time.perf_counter() - t0))
    res["rss_mib_after_load"], _ = (round(x, 1) for x in rss_mib())
    if b.on_disk:
        secs, size, lat = snapshot_while_applying(b, workdir / "snap", entries, batch)
        res["snapshot_s"] = round(secs, 3)
        res["snapshot_mib"] = round(size / 2**20, 1)
        res["batches_during_snapshot"] = len(lat)
        res["batch_ms_max_during_snapshot"] = round(max(lat) * 1000, 2) if lat else None
        res["batch_ms_p50_during_snapshot"] = (
            round(statistics.median(lat) * 1000, 3) if lat else None
        )
    else:
        t0 = time.perf_counter()
        size = b.snapshot(workdir / "snap")
        res["snapshot_s"] = round(time.perf_counter() - t0, 3)
        res["snapshot_mib"] = round(size / 2**20, 1)
        res["batches_during_snapshot"] = 0  # it runs on the loop: nothing applies meanwhile
        res["batch_ms_max_during_snapshot"] = round(res["snapshot_s"] * 1000, 2)
    b.commit()
    if isinstance(b, SqliteBackend):
        b.stop_syncer()
        res["syncs"] = len(b.sync_seconds)
        res["sync_ms_max"] = round(max(b.sync_seconds, default=0) * 1000, 1)
    t0 = time.perf_counter()
    b.reopen()
    b.get(key_of(0))
    res["open_to_ready_s"] = round(time.perf_counter() - t0, 3)
    res["rss_mib_after_reopen"], res["rss_mib_peak"] = (round(x, 1) for x in rss_mib())
    if b.on_disk:
        res["disk_mib"] = round(
            sum(
                p.stat().st_size for p in workdir.rglob("*") if p.is_file() and "snap" not in str(p)
            )
            / 2**20,
            1,
        )
    b.close()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--backends", default="sqlite,sqlite-vacuum,memory,lmdb")
    ap.add_argument("--lmdb-python", default="/tmp/lmdbvenv/bin/python")
    ap.add_argument("--dir", default=None, help="where the stores go (default: a temp dir)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        res = child(args.child, args.entries, args.batch, Path(args.dir))
        print(json.dumps(res))
        return
    print(
        f"{args.entries} puts of {COMMAND_BYTES} bytes, batches of {args.batch}; "
        f"sqlite {sqlite3.sqlite_version}, python {sys.version.split()[0]}",
        flush=True,
    )
    for name in args.backends.split(","):
        python = sys.executable
        if name.startswith("lmdb"):
            if not Path(args.lmdb_python).exists():
                print(f"{name}: skipped ({args.lmdb_python} not found)")
                continue
            python = args.lmdb_python
        d = Path(tempfile.mkdtemp(prefix=f"store-bench-{name}-", dir=args.dir))
        try:
            proc = subprocess.run(
                [
                    *(python, "-m", "bench.store_backends", "--child", name, "--dir", str(d)),
                    *("--entries", str(args.entries), "--batch", str(args.batch)),
                ],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            shutil.rmtree(d, ignore_errors=True)
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr[-2000:]}")
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"\n== {name}")
        for k, v in res.items():
            if k not in ("backend", "entries", "batch"):
                print(f"  {k:32} {v}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
