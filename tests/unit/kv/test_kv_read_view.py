"""Reads between batches share one read transaction on the writer connection: they see every
commit, the next batch ends that transaction before it writes (so the WAL still restarts after
a checkpoint), and aborting or closing leaves nothing open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from raftnode.kv.store import KeyRange, KeyValueStore
from tests.unit.kv.conftest import Applier


def test_a_read_after_each_commit_sees_that_commit(store: KeyValueStore) -> None:
    applier = Applier(store)
    for n in range(20):
        applier.put("k", f"v{n}")
        store.commit()
        record = store.get("k")
        assert record is not None and record.value == f"v{n}"
        assert [item[0] for item in store.list("k")] == ["k"]
        assert store.count(KeyRange.of_prefix("")) == 1
    assert store.applied_index == 20


def test_another_connection_sees_commits_made_while_reads_were_served(
    store: KeyValueStore, tmp_path: Path
) -> None:
    applier = Applier(store)
    applier.put("a", "1")
    store.commit()
    assert store.get("a") is not None  # the reads' transaction is open now
    applier.put("b", "2")
    store.commit()
    other = sqlite3.connect(tmp_path / "kv.sqlite")
    try:
        keys = [row[0] for row in other.execute("SELECT key FROM kv ORDER BY key")]
    finally:
        other.close()
    assert keys == [b"a", b"b"]


def test_the_wal_stays_bounded_when_reads_come_between_every_batch(
    store: KeyValueStore, tmp_path: Path
) -> None:
    """Had a batch grown out of the reads' transaction (begun before the checkpoint), its
    commit could not restart the WAL, which would grow by every batch."""
    applier = Applier(store)
    wal = tmp_path / "kv.sqlite-wal"
    sizes = []
    for n in range(300):
        applier.put(f"key-{n % 10}", "x" * 2000)
        store.commit()
        assert store.get(f"key-{n % 10}") is not None
        store.sync()  # the background sync's passive checkpoint
        assert store.get("key-0") is not None
        sizes.append(wal.stat().st_size)
    # One batch is a handful of 4 KiB pages; 300 batches without a restart would be > 3 MB.
    assert max(sizes) < 256 * 1024, sizes[-5:]


def test_abort_and_close_after_reads_leave_the_store_consistent(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite"
    store = KeyValueStore.open(path)
    applier = Applier(store)
    applier.put("kept", "1")
    store.commit()
    assert store.get("kept") is not None
    applier.put("dropped", "2")
    store.abort()
    assert store.get("dropped") is None
    assert store.get("kept") is not None
    applier.index = store.applied_index
    applier.put("after", "3")
    store.commit()
    assert store.get("kept") is not None
    store.close()
    reopened = KeyValueStore.open(path)
    try:
        assert reopened.get("after") is not None
        assert reopened.get("dropped") is None
        assert reopened.applied_index == 2
    finally:
        reopened.close()
