"""The store's history window: written with each change, bounded by revisions and bytes,
identical on two stores fed the same log, carried by snapshots."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from raftnode.kv.commands import HISTORY_FORMAT, REVISIONS_FORMAT, Compare, FormatUpgrade, TxnOp
from raftnode.kv.history import ROW_OVERHEAD, Change, HistoryLimits
from raftnode.kv.store import KeyValueStore, StoreFormatError, inspect_snapshot
from tests.unit.kv.conftest import Applier


def upgraded(path: Path, limits: HistoryLimits | None = None) -> tuple[KeyValueStore, Applier]:
    store = KeyValueStore.open(path, history=limits)
    a = Applier(store)
    assert a.raw(FormatUpgrade(HISTORY_FORMAT).encode()).ok
    return store, a


def all_changes(store: KeyValueStore) -> list[Change]:
    assert store.history is not None
    return store.history.changes(0, 1_000_000)


def test_no_history_before_the_upgrade_entry_then_every_change_from_there(tmp_path: Path) -> None:
    store = KeyValueStore.open(tmp_path / "kv.sqlite")
    a = Applier(store)
    a.put("before", "x")
    assert store.history is None
    assert a.raw(FormatUpgrade(HISTORY_FORMAT).encode()).ok
    assert store.format_version == HISTORY_FORMAT and store.counts_versions
    assert store.history is not None and store.history.compact_revision == 1
    a.put("a", "1")
    a.put("a", "2")
    a.delete("a")
    a.delete("missing")  # changes nothing: no event
    a.put("before", "y")
    store.commit()
    got = [
        (c.revision, c.kind, c.key, c.value, c.create_revision, c.version)
        for c in all_changes(store)
    ]
    assert got == [
        (2, "put", "a", "1", 2, 1),
        (3, "put", "a", "2", 2, 2),
        (4, "delete", "a", None, 0, 0),
        (5, "put", "before", "y", 1, 2),
    ]
    assert inspect_snapshot(store.path).format_version == HISTORY_FORMAT
    store.close()


def test_a_txn_writes_its_changes_at_one_revision_in_order(tmp_path: Path) -> None:
    store, a = upgraded(tmp_path / "kv.sqlite")
    a.put("x", "0")
    a.txn(
        [Compare("x", "value", "equal", "0")],
        [TxnOp("put", "y", "1"), TxnOp("delete", "x"), TxnOp("get", "y"), TxnOp("put", "z", "2")],
    )
    got = [(c.revision, c.kind, c.key) for c in all_changes(store)]
    assert got == [(1, "put", "x"), (2, "put", "y"), (2, "delete", "x"), (2, "put", "z")]
    # A page never splits a revision: asking for 2 changes after 1 gives all three of rev 2.
    assert store.history is not None
    assert [c.key for c in store.history.changes(1, 2)] == ["y", "x", "z"]
    store.close()


def test_the_window_keeps_the_last_max_revisions(tmp_path: Path) -> None:
    store, a = upgraded(tmp_path / "kv.sqlite", HistoryLimits(max_revisions=5))
    for i in range(12):
        a.put(f"k{i % 3}", str(i))
    store.commit()
    assert store.history is not None and store.history.compact_revision == 7
    assert [c.revision for c in all_changes(store)] == [8, 9, 10, 11, 12]
    store.close()
    with KeyValueStore.open(
        tmp_path / "kv.sqlite", history=HistoryLimits(max_revisions=5)
    ) as again:
        assert again.history is not None and again.history.compact_revision == 7
        assert again.history.rows == 5


def test_the_window_is_bounded_by_bytes_but_keeps_the_newest_revision(tmp_path: Path) -> None:
    row = len("key") + 100 + ROW_OVERHEAD
    store, a = upgraded(tmp_path / "kv.sqlite", HistoryLimits(max_bytes=3 * row))
    for _ in range(10):
        a.put("key", "v" * 100)
    assert store.history is not None and store.history.nbytes <= 3 * row
    assert [c.revision for c in all_changes(store)] == [8, 9, 10]
    assert store.history.compact_revision == 7
    a.put("big", "b" * (10 * row))  # over the bound alone: kept, everything older dropped
    assert [c.revision for c in all_changes(store)] == [11]
    store.close()


def test_two_stores_fed_the_same_log_hold_the_same_window(tmp_path: Path) -> None:
    limits = HistoryLimits(max_revisions=50, max_bytes=4000)
    stores = [upgraded(tmp_path / f"kv{i}.sqlite", limits) for i in range(2)]
    rng = random.Random(7)
    for step in range(300):
        key, value = f"k{rng.randrange(20)}", "v" * rng.randrange(1, 80)
        for store, a in stores:
            a.put(key, value) if step % 4 else a.delete(key)
            if step % 17 == 0:
                store.commit()
    for store, _ in stores:
        store.commit()
    (one, _), (two, _) = stores
    assert all_changes(one) == all_changes(two)
    assert one.history is not None and two.history is not None
    assert (one.history.compact_revision, one.history.nbytes) == (
        two.history.compact_revision,
        two.history.nbytes,
    )
    assert one.history.nbytes <= 4000 and one.history.compact_revision > 0
    for store, _ in stores:
        store.close()


def test_a_snapshot_carries_the_window(tmp_path: Path) -> None:
    store, a = upgraded(tmp_path / "kv.sqlite", HistoryLimits(max_revisions=4))
    for i in range(6):
        a.put("k", str(i))
    store.commit()
    snap = tmp_path / "snap.sqlite"
    info = store.snapshot_to(snap)
    assert info.format_version == HISTORY_FORMAT
    expected = all_changes(store)
    store.close()
    other = KeyValueStore.open(tmp_path / "other.sqlite", history=HistoryLimits(max_revisions=4))
    assert other.history is None
    other.restore_from(snap, expect_sha256=info.sha256)
    assert other.history is not None and other.history.compact_revision == 2
    assert all_changes(other) == expected
    Applier(other, start=info.applied_index).put("k", "next")
    assert [c.revision for c in all_changes(other)] == [4, 5, 6, 7]
    other.close()


def test_a_format_2_store_opens_without_history_and_upgrades_through_the_log(
    tmp_path: Path,
) -> None:
    store = KeyValueStore.open(tmp_path / "kv.sqlite")
    a = Applier(store)
    a.put("a", "1")
    a.raw(FormatUpgrade(REVISIONS_FORMAT).encode())
    store.commit()
    store.close()
    with KeyValueStore.open(tmp_path / "kv.sqlite") as again:
        assert again.format_version == REVISIONS_FORMAT and again.history is None
        b = Applier(again, start=a.index)
        b.raw(FormatUpgrade(HISTORY_FORMAT).encode())
        b.put("a", "2")
        assert [(c.revision, c.version) for c in all_changes(again)] == [(2, 2)]


def test_history_tables_in_a_format_2_file_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "kv.sqlite"
    store, _ = upgraded(p)
    store.commit()
    store.close()
    conn = sqlite3.connect(p)
    conn.execute(f"PRAGMA user_version = {REVISIONS_FORMAT}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreFormatError, match="history before format 3"):
        inspect_snapshot(p)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        HistoryLimits(max_revisions=0)


def test_a_large_window_drops_a_64th_at_a_time_and_never_holds_more(tmp_path: Path) -> None:
    store, a = upgraded(tmp_path / "kv.sqlite", HistoryLimits(max_revisions=128))
    assert store.history is not None
    held: list[int] = []
    for i in range(400):
        a.put(f"k{i % 7}", str(i))
        held.append(store.history.rows)
    assert max(held) == 128
    assert min(held[128:]) == 128 - 128 // 64
    revisions = [c.revision for c in all_changes(store)]
    assert revisions == list(range(store.history.compact_revision + 1, 401))
    store.close()
