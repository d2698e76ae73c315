"""Snapshots: atomic save, segment removal, restart, and corrupt files."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftnode.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from raftnode.storage import CorruptSnapshotError, RaftStorage
from raftnode.storage.records import encode_frame

CONF = ConfState(frozenset({1, 2, 3}), frozenset({9}))


def batch(first: int, last: int, term: int = 1) -> list[Entry]:
    return [Entry(term, i, data=b"entry-%05d" % i) for i in range(first, last + 1)]


def snapshot(index: int, term: int = 1, data: bytes = b"kv-state") -> Snapshot:
    return Snapshot(SnapshotMeta(index, term, CONF), data)


FRAME = len(encode_frame(batch(1, 10)))
SEGMENT_BYTES = 3 * FRAME  # three 10-entry batches per segment: 1..30, 31..60, 61..90, ...


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data_dir = tmp_path / "node"
    with RaftStorage.open(data_dir, segment_bytes=SEGMENT_BYTES) as storage:
        for first in range(1, 100, 10):
            storage.persist(batch(first, first + 9), HardState(term=1, vote=1, commit=first + 9))
    return data_dir


def wal_files(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "wal").glob("*.wal"))


def test_snapshot_removes_covered_segments_and_restart_yields_the_rest(data_dir: Path) -> None:
    assert len(wal_files(data_dir)) == 4  # 1..30, 31..60, 61..90, 91..100
    with RaftStorage.open(data_dir, segment_bytes=SEGMENT_BYTES) as storage:
        storage.save_snapshot(snapshot(45))
    # 1..30 is covered; 31..60 holds 46, the first entry after the snapshot, so it stays.
    assert len(wal_files(data_dir)) == 3
    with RaftStorage.open(data_dir, segment_bytes=SEGMENT_BYTES) as storage:
        assert storage.snapshot == snapshot(45)
        assert storage.entries() == batch(46, 100)
        assert storage.hard_state.commit == 100
        storage.save_snapshot(snapshot(60, data=b"newer"))
        assert storage.compact(60) == 0  # already done by save_snapshot
    assert len(wal_files(data_dir)) == 2
    assert [p.name for p in (data_dir / "snap").iterdir()] == [
        "000000000000003c-0000000000000001.snap"
    ]
    with RaftStorage.open(data_dir, segment_bytes=SEGMENT_BYTES) as storage:
        assert storage.snapshot == snapshot(60, data=b"newer")
        assert storage.entries() == batch(61, 100)
        storage.persist(batch(101, 105, term=2), HardState(term=2, vote=3, commit=100))
    with RaftStorage.open(data_dir, segment_bytes=SEGMENT_BYTES) as storage:
        assert storage.entries() == batch(61, 100) + batch(101, 105, term=2)


def test_active_segment_is_kept_even_when_fully_covered(data_dir: Path) -> None:
    with RaftStorage.open(data_dir, segment_bytes=SEGMENT_BYTES) as storage:
        storage.save_snapshot(snapshot(100))
        storage.persist(batch(101, 101))
    assert len(wal_files(data_dir)) == 1
    with RaftStorage.open(data_dir, segment_bytes=SEGMENT_BYTES) as storage:
        assert storage.entries() == batch(101, 101)


def test_snapshot_from_a_leader_beyond_the_log_end(data_dir: Path) -> None:
    with RaftStorage.open(data_dir, segment_bytes=SEGMENT_BYTES) as storage:
        storage.save_snapshot(snapshot(500, term=4))
        assert storage.last_index == 500
        storage.persist(batch(501, 503, term=4), HardState(term=4, vote=0, commit=501))
    with RaftStorage.open(data_dir, segment_bytes=SEGMENT_BYTES) as storage:
        assert storage.snapshot is not None and storage.snapshot.meta.index == 500
        assert storage.entries() == batch(501, 503, term=4)
        assert storage.hard_state == HardState(term=4, vote=0, commit=501)


def test_commit_is_at_least_the_snapshot_index(data_dir: Path) -> None:
    with RaftStorage.open(data_dir, segment_bytes=SEGMENT_BYTES) as storage:
        storage.persist([], HardState(term=5, vote=0, commit=3))
    with RaftStorage.open(data_dir, segment_bytes=SEGMENT_BYTES) as storage:
        assert storage.hard_state.commit == 3
        storage.save_snapshot(snapshot(40))
    with RaftStorage.open(data_dir, segment_bytes=SEGMENT_BYTES) as storage:
        assert storage.hard_state == HardState(term=5, vote=0, commit=40)


def test_snapshots_and_compaction_reject_bad_requests(data_dir: Path) -> None:
    with RaftStorage.open(data_dir, segment_bytes=SEGMENT_BYTES) as storage:
        storage.save_snapshot(snapshot(50))
        with pytest.raises(ValueError, match="older"):
            storage.save_snapshot(snapshot(40))
        with pytest.raises(ValueError, match="only covers up to 50"):
            storage.compact(70)
        with pytest.raises(ValueError, match="in the snapshot"):
            storage.persist(batch(50, 51))
    with RaftStorage.open(data_dir, segment_bytes=SEGMENT_BYTES) as storage:
        assert storage.snapshot == snapshot(50)
        assert storage.entries() == batch(51, 100)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[:-1], id="truncated"),
        pytest.param(lambda b: b[:10], id="header-truncated"),
        pytest.param(lambda b: b[:-3] + bytes([b[-3] ^ 1]) + b[-2:], id="data-bit-flip"),
        pytest.param(lambda b: b[:9] + bytes([b[9] ^ 1]) + b[10:], id="index-bit-flip"),
        pytest.param(lambda b: b"XXXX" + b[4:], id="magic"),
        pytest.param(lambda b: b + b"extra", id="trailing-bytes"),
    ],
)
def test_corrupt_snapshot_is_an_error_naming_the_file(data_dir: Path, damage) -> None:
    with RaftStorage.open(data_dir, segment_bytes=SEGMENT_BYTES) as storage:
        storage.save_snapshot(snapshot(45, data=b"0123456789" * 10))
    (path,) = (data_dir / "snap").iterdir()
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CorruptSnapshotError) as caught:
        RaftStorage.open(data_dir, segment_bytes=SEGMENT_BYTES)
    assert caught.value.path == path
    assert str(path) in str(caught.value)


def test_leftover_temporary_snapshot_is_ignored_and_removed(data_dir: Path) -> None:
    leftover = data_dir / "snap" / "00000000000000ff-0000000000000001.snap.tmp"
    leftover.write_bytes(b"half written")
    with RaftStorage.open(data_dir, segment_bytes=SEGMENT_BYTES) as storage:
        assert storage.snapshot is None
        assert storage.entries() == batch(1, 100)
    assert not leftover.exists()
