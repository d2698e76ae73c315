"""The RaftStorage facade: fresh start, input validation, hard state, locking, I/O failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftnode.raft.types import Entry, EntryType, HardState
from raftnode.storage import (
    CorruptHardStateError,
    FileSystem,
    OpenFile,
    RaftStorage,
    StorageClosedError,
    StorageError,
    StorageLockedError,
)


def batch(first: int, last: int, term: int = 1) -> list[Entry]:
    return [Entry(term, i, data=b"x" * (i % 7)) for i in range(first, last + 1)]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "node"


def test_fresh_directory_starts_empty(data_dir: Path) -> None:
    with RaftStorage.open(str(data_dir)) as storage:
        assert storage.hard_state == HardState()
        assert storage.snapshot is None
        assert storage.entries() == []
        assert storage.last_index == 0
        assert storage.healthy
    assert (data_dir / "wal").is_dir() and (data_dir / "snap").is_dir()


def test_entries_of_every_type_and_the_hard_state_round_trip(data_dir: Path) -> None:
    entries = [
        Entry(1, 1, EntryType.CONF_CHANGE, b'{"op":0}'),
        Entry(1, 2),
        Entry(2, 3, EntryType.NORMAL, bytes(range(256))),
    ]
    with RaftStorage.open(data_dir) as storage:
        seconds = storage.persist(entries, HardState(term=2, vote=7, commit=2))
        assert seconds == storage.last_fsync_seconds > 0
    with RaftStorage.open(data_dir) as storage:
        assert storage.entries() == entries
        assert storage.hard_state == HardState(term=2, vote=7, commit=2)
        assert storage.last_index == 3


@pytest.mark.parametrize(
    ("entries", "hard_state", "message"),
    [
        (batch(7, 8), None, "log ends at 5"),
        ([Entry(1, 6), Entry(1, 8)], None, "not contiguous"),
        ([], HardState(term=2, vote=1), "term may not go back"),
        ([], HardState(term=3, vote=2), "vote in term 3 may not change"),
        (batch(6, 6), HardState(term=3, vote=1, commit=7), "commit 7 is past the last entry 6"),
    ],
)
def test_bad_input_is_rejected_and_changes_nothing(
    data_dir: Path, entries: list[Entry], hard_state: HardState | None, message: str
) -> None:
    with RaftStorage.open(data_dir) as storage:
        storage.persist(batch(1, 5), HardState(term=3, vote=1, commit=2))
        sizes = {p: p.stat().st_size for p in data_dir.rglob("*") if p.is_file()}
        with pytest.raises(ValueError, match=message):
            storage.persist(entries, hard_state)
        assert {p: p.stat().st_size for p in data_dir.rglob("*") if p.is_file()} == sizes
        storage.persist(batch(6, 6))  # still usable
    with RaftStorage.open(data_dir) as storage:
        assert storage.entries() == batch(1, 6)
        assert storage.hard_state == HardState(term=3, vote=1, commit=2)


def test_a_second_open_of_the_same_directory_is_refused(data_dir: Path) -> None:
    storage = RaftStorage.open(data_dir)
    with pytest.raises(StorageLockedError, match="in use"):
        RaftStorage.open(data_dir)
    storage.close()
    storage.close()  # idempotent
    with pytest.raises(StorageClosedError):
        storage.persist(batch(1, 1))
    RaftStorage.open(data_dir).close()


def test_corrupt_hard_state_is_an_error_naming_the_file(data_dir: Path) -> None:
    with RaftStorage.open(data_dir) as storage:
        storage.persist([], HardState(term=4, vote=2))
    path = data_dir / "hardstate"
    raw = bytearray(path.read_bytes())
    raw[8] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptHardStateError, match=str(path)):
        RaftStorage.open(data_dir)


class FailingFileSystem(FileSystem):
    """Fails the sync of the n-th batch written to the WAL with EIO, as a dying disk would."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.wal_syncs = 0
        self.dsync_flag = None  # each batch: write_at, then datasync

    def datasync(self, f: OpenFile) -> None:
        if f.path.suffix == ".wal":
            self.wal_syncs += 1
            if self.wal_syncs == self.fail_at:
                raise OSError(5, "Input/output error")
        super().datasync(f)


def test_after_an_io_error_the_storage_refuses_writes_until_restarted(data_dir: Path) -> None:
    storage = RaftStorage.open(data_dir, fs=FailingFileSystem(fail_at=2))
    storage.persist(batch(1, 3), HardState(term=1))
    with pytest.raises(OSError):
        storage.persist(batch(4, 6))
    assert not storage.healthy
    with pytest.raises(StorageError, match="restart the node"):
        storage.persist(batch(4, 6))
    storage.close()
    with RaftStorage.open(data_dir) as storage:
        assert storage.entries()[:3] == batch(1, 3)
        assert storage.healthy


def test_a_commit_index_alone_is_noted_without_io_and_anything_else_is_left_to_persist(
    data_dir: Path,
) -> None:
    """The event loop notes a commit-only hard state itself (no hop to the disk worker);
    a new term or vote, a bad commit index or a storage another thread holds are refused."""
    with RaftStorage.open(data_dir) as storage:
        storage.persist(batch(1, 5), HardState(term=3, vote=1, commit=2))
        assert storage.try_note_commit(HardState(term=3, vote=1, commit=5))
        assert storage._current == HardState(term=3, vote=1, commit=5)
        assert not storage.try_note_commit(HardState(term=4, vote=0, commit=5))
        assert not storage.try_note_commit(HardState(term=3, vote=2, commit=5))
        with pytest.raises(ValueError, match="commit 6 is past the last entry 5"):
            storage.try_note_commit(HardState(term=3, vote=1, commit=6))
        with storage._mutex:  # the worker is busy with it (a snapshot being saved, say)
            assert not storage.try_note_commit(HardState(term=3, vote=1, commit=4))
        assert storage._current == HardState(term=3, vote=1, commit=5)
        # The noted commit index is written with the next term.
        storage.persist([], HardState(term=4, vote=2, commit=5))
    with RaftStorage.open(data_dir) as storage:
        assert storage.hard_state == HardState(term=4, vote=2, commit=5)
