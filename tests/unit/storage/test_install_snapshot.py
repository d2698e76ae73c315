"""A leader's snapshot replaces the log: stale entries after it must not survive a restart."""

from __future__ import annotations

from pathlib import Path

from raftnode.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from raftnode.storage import RaftStorage


def _entries(first: int, last: int, term: int) -> list[Entry]:
    return [Entry(term=term, index=i, data=b"t%d-%d" % (term, i)) for i in range(first, last + 1)]


def test_installed_snapshot_voids_later_entries_across_restart(tmp_path: Path) -> None:
    with RaftStorage.open(tmp_path) as storage:
        storage.persist(_entries(1, 30, 2), HardState(term=2, vote=1, commit=5))
        snap = Snapshot(
            SnapshotMeta(index=20, term=3, conf=ConfState(frozenset({1, 2, 3}))), b"img"
        )
        storage.install_snapshot(snap)
        assert storage.last_index == 20
    with RaftStorage.open(tmp_path) as storage:
        assert storage.snapshot is not None and storage.snapshot.meta.index == 20
        assert storage.entries() == []
        storage.persist(_entries(21, 25, 3), HardState(term=3, vote=0, commit=20))
    with RaftStorage.open(tmp_path) as storage:
        assert [e.index for e in storage.entries()] == list(range(21, 26))
        assert all(e.term == 3 for e in storage.entries())


def test_local_snapshot_keeps_later_entries(tmp_path: Path) -> None:
    with RaftStorage.open(tmp_path) as storage:
        storage.persist(_entries(1, 30, 2), HardState(term=2, vote=1, commit=30))
        storage.save_snapshot(Snapshot(SnapshotMeta(index=20, term=2), b"img"))
    with RaftStorage.open(tmp_path) as storage:
        assert [e.index for e in storage.entries()] == list(range(21, 31))
