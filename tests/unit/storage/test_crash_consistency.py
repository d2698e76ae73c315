"""fsync/rename ordering and crash behaviour, through a file layer that simulates power loss."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftnode.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from raftnode.storage import RaftStorage
from raftnode.storage.records import encode_frame

from .crashfs import CrashableFileSystem, SimulatedCrash


def batch(first: int, last: int, term: int = 1) -> list[Entry]:
    return [Entry(term, i, data=b"payload-%06d" % i) for i in range(first, last + 1)]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "node"


def test_group_commit_is_one_wal_fsync_per_persist(data_dir: Path) -> None:
    fs = CrashableFileSystem(data_dir)
    storage = RaftStorage.open(data_dir, fs=fs)
    fs.ops.clear()
    storage.persist(batch(1, 1000), HardState(term=1, vote=0, commit=0))  # term 0 -> 1
    wal_ops = [op for op in fs.ops if "/wal/" in op[1]]
    # The new segment's runway first (zeros, fsync), then the batch (write, fsync).
    assert [op for op, _ in wal_ops] == ["write", "fsync", "write", "fsync"]
    fs.ops.clear()
    storage.persist(batch(1001, 2500), HardState(term=1, vote=0, commit=900))
    assert [op for op, _ in fs.ops] == ["write", "fsync"]  # commit-only change: no hard-state I/O
    storage.close()


def test_hard_state_is_fsynced_before_rename_and_directory_fsynced_after(data_dir: Path) -> None:
    fs = CrashableFileSystem(data_dir)
    storage = RaftStorage.open(data_dir, fs=fs)
    fs.ops.clear()
    storage.persist(batch(1, 3, term=2), HardState(term=2, vote=3, commit=1))
    assert fs.ops == [
        ("write", "node/wal/0000000000000001-0000000000000001.wal"),  # the runway
        ("fsync", "node/wal/0000000000000001-0000000000000001.wal"),
        ("write", "node/wal/0000000000000001-0000000000000001.wal"),  # the batch
        ("fsync", "node/wal/0000000000000001-0000000000000001.wal"),
        ("open", "node/hardstate.tmp"),
        ("write", "node/hardstate.tmp"),
        ("fsync", "node/hardstate.tmp"),
        ("close", "node/hardstate.tmp"),
        ("rename", "node/hardstate.tmp"),
        ("fsync_dir", "node"),
    ]
    fs.ops.clear()
    storage.persist([], HardState(term=3, vote=0, commit=1))
    assert [op for op, _ in fs.ops] == ["open", "write", "fsync", "close", "rename", "fsync_dir"]
    storage.close()


def test_snapshot_is_durable_before_segments_are_removed(data_dir: Path) -> None:
    fs = CrashableFileSystem(data_dir)
    storage = RaftStorage.open(data_dir, fs=fs, segment_bytes=2000)
    for first in range(1, 200, 10):
        storage.persist(batch(first, first + 9), HardState(term=1, vote=1, commit=first))
    fs.ops.clear()
    storage.save_snapshot(Snapshot(SnapshotMeta(120, 1, ConfState(frozenset({1}))), b"state"))
    kinds = [(op, path.split("/")[1] if "/" in path else path) for op, path in fs.ops]
    first_unlink = kinds.index(("unlink", "wal"))
    assert kinds.index(("fsync", "snap")) < kinds.index(("rename", "snap"))
    assert kinds.index(("rename", "snap")) < kinds.index(("fsync_dir", "snap")) < first_unlink
    assert kinds[-1] == ("fsync_dir", "wal")
    storage.close()


def test_crash_after_persist_returns_keeps_everything(data_dir: Path) -> None:
    fs = CrashableFileSystem(data_dir)
    storage = RaftStorage.open(data_dir, fs=fs, segment_bytes=1500)
    for first in range(1, 100, 10):
        storage.persist(batch(first, first + 9, term=2), HardState(term=2, vote=1))
    storage.persist(batch(50, 52, term=3), HardState(term=3, vote=2, commit=49))
    fs.crash()  # no close(): the process died
    with RaftStorage.open(data_dir) as recovered:
        assert recovered.entries() == batch(1, 49, term=2) + batch(50, 52, term=3)
        assert (recovered.hard_state.term, recovered.hard_state.vote) == (3, 2)
        assert recovered.hard_state.commit == 49  # saved together with the term change


def test_commit_only_change_is_written_lazily(data_dir: Path) -> None:
    fs = CrashableFileSystem(data_dir)
    storage = RaftStorage.open(data_dir, fs=fs)
    storage.persist(batch(1, 10), HardState(term=1, vote=1, commit=2))
    storage.persist([], HardState(term=1, vote=1, commit=9))
    fs.crash()
    with RaftStorage.open(data_dir, fs=CrashableFileSystem(data_dir)) as storage:
        assert storage.hard_state == HardState(term=1, vote=1, commit=2)  # lost, by design
        storage.persist([], HardState(term=1, vote=1, commit=9))
    with RaftStorage.open(data_dir) as storage:
        assert storage.hard_state.commit == 9  # written by close()


def _crash_points(data_dir: Path, run) -> int:
    """How many file operations ``run`` issues on a fresh copy of the base state."""
    fs = CrashableFileSystem(data_dir)
    storage = RaftStorage.open(data_dir, fs=fs, segment_bytes=1500)
    fs.ops.clear()
    run(storage)
    count = len(fs.ops)
    storage.close()
    return count


BASE = [batch(i, i + 9, term=1) for i in range(1, 60, 10)]


def _base_state(data_dir: Path) -> None:
    with RaftStorage.open(data_dir, segment_bytes=1500) as storage:
        for entries in BASE:
            storage.persist(entries, HardState(term=1, vote=1, commit=entries[0].index))


@pytest.mark.parametrize("keep_unsynced", [False, True])
def test_crash_at_any_point_of_persist_loses_at_most_that_batch(
    tmp_path: Path, keep_unsynced: bool
) -> None:
    new_entries = batch(55, 80, term=2)  # truncates 55..60, rolls to a new segment
    new_state = HardState(term=2, vote=2, commit=54)
    assert len(encode_frame(new_entries)) > 200

    def run(storage: RaftStorage) -> None:
        storage.persist(new_entries, new_state)

    probe = tmp_path / "probe"
    _base_state(probe)
    points = _crash_points(probe, run)
    assert points >= 8  # WAL open/write/fsync, dir fsync, hard state tmp/fsync/rename/dir fsync
    old_log = [e for entries in BASE for e in entries]
    new_log = old_log[:54] + new_entries
    outcomes = set()
    for point in range(points):
        data_dir = tmp_path / f"crash-{point}"
        _base_state(data_dir)
        fs = CrashableFileSystem(data_dir)
        storage = RaftStorage.open(data_dir, fs=fs, segment_bytes=1500)
        start = len(fs.ops)
        fs.crash_before = lambda number, _op, _path, at=start + point: number == at
        with pytest.raises(SimulatedCrash):
            run(storage)
        fs.crash(keep_unsynced=keep_unsynced)
        with RaftStorage.open(data_dir, segment_bytes=1500) as recovered:
            log = recovered.entries()
            state = recovered.hard_state
        assert log in (old_log, new_log), f"crash before op {point}"
        assert (state.term, state.vote) in ((1, 1), (2, 2))
        if (state.term, state.vote) == (2, 2):
            assert log == new_log, "hard state must not be durable before the entries"
        outcomes.add((log == new_log, state.term))
    assert (False, 1) in outcomes  # a crash early enough loses the batch


@pytest.mark.parametrize("keep_unsynced", [False, True])
def test_crash_at_any_point_of_save_snapshot_recovers_a_consistent_log(
    tmp_path: Path, keep_unsynced: bool
) -> None:
    snapshot = Snapshot(SnapshotMeta(35, 1, ConfState(frozenset({1, 2, 3}))), b"kv-image" * 100)

    def run(storage: RaftStorage) -> None:
        storage.save_snapshot(snapshot)

    probe = tmp_path / "probe"
    _base_state(probe)
    points = _crash_points(probe, run)
    full_log = [e for entries in BASE for e in entries]
    for point in range(points):
        data_dir = tmp_path / f"crash-{point}"
        _base_state(data_dir)
        fs = CrashableFileSystem(data_dir)
        storage = RaftStorage.open(data_dir, fs=fs, segment_bytes=1500)
        start = len(fs.ops)
        fs.crash_before = lambda number, _op, _path, at=start + point: number == at
        with pytest.raises(SimulatedCrash):
            run(storage)
        fs.crash(keep_unsynced=keep_unsynced)
        with RaftStorage.open(data_dir, segment_bytes=1500) as recovered:
            if recovered.snapshot is None:
                assert recovered.entries() == full_log, f"crash before op {point}"
            else:
                assert recovered.snapshot == snapshot
                assert recovered.entries() == full_log[35:], f"crash before op {point}"
