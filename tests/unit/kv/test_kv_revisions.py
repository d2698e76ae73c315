"""Per-key create_revision, mod_revision and version; CAS on mod_revision; the format upgrade
through the log; snapshots of both formats."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from raftnode.kv.commands import REVISIONS_FORMAT, FormatUpgrade, KeyRevisions
from raftnode.kv.store import KeyValueStore, StoreFormatError, inspect_snapshot
from tests.unit.kv.conftest import Applier


def revisions(store: KeyValueStore, key: str) -> tuple[int, int, int | None] | None:
    rec = store.get(key)
    return None if rec is None else (rec.create_revision, rec.mod_revision, rec.version)


def test_a_fresh_store_counts_no_versions_until_the_upgrade_entry(store: KeyValueStore) -> None:
    a = Applier(store)
    assert store.format_version == 1 and not store.counts_versions
    r = a.put("a", "1")
    assert r.key_revisions is None and r.to_json() == "[true, 1, null, null, false, null]"
    assert revisions(store, "a") == (1, 1, None)
    a.put("a", "2")
    up = a.upgrade()
    assert up.ok and up.revision == 2 and store.counts_versions and store.revision == 2
    assert revisions(store, "a") == (1, 2, 1)  # counted from the upgrade: the same everywhere
    assert a.upgrade().ok and store.format_version == REVISIONS_FORMAT  # a no-op the second time
    store.commit()
    assert inspect_snapshot(store.path).format_version == 2


def test_version_counts_writes_since_creation_and_a_delete_resets_it(
    store: KeyValueStore,
) -> None:
    a = Applier(store)
    a.upgrade()
    r = a.put("k", "1")
    assert r.key_revisions == KeyRevisions(1, 1, 1)
    r = a.put("k", "2")
    assert r.key_revisions == KeyRevisions(1, 2, 2)
    a.put("other", "x")
    r = a.put("k", "3")
    assert r.key_revisions == KeyRevisions(1, 4, 3)
    assert revisions(store, "k") == (1, 4, 3)
    d = a.delete("k")
    assert d.ok and d.revision == 5 and d.key_revisions == KeyRevisions(1, 4, 3)
    assert store.get("k") is None
    r = a.put("k", "again")
    assert r.key_revisions == KeyRevisions(6, 6, 1)  # recreated: a new life
    listed = {k: (rec.create_revision, rec.mod_revision, rec.version) for k, rec in store.list()}
    assert listed == {"k": (6, 6, 1), "other": (3, 3, 1)}


def test_cas_on_mod_revision_has_no_aba(store: KeyValueStore) -> None:
    a = Applier(store)
    a.upgrade()
    seen = a.put("k", "A").revision
    a.put("k", "B")
    a.put("k", "A")  # back to the value first seen: a value CAS would pass, this must not
    r = a.put("k", "C", prev_revision=seen)
    assert not r.ok and r.error == "cas_mismatch" and r.current_value == "A"
    assert r.key_revisions == KeyRevisions(1, 3, 3) and store.revision == 3
    assert a.put("k", "C", prev_revision=3).ok
    assert not a.put("new", "x", prev_revision=4).ok  # absent: its mod_revision is 0
    assert a.put("new", "x", prev_revision=0).ok
    assert not a.put("new", "y", prev_revision=0).ok  # 0 means "must be absent"
    both = a.put("k", "D", prev_revision=4, cas=True, prev_value="wrong")
    assert not both.ok  # value and revision must both hold
    assert not a.delete("k", prev_revision=1).ok
    assert a.delete("k", prev_revision=4).ok
    assert store.get("k") is None


def test_results_of_keyed_writes_replay_with_their_revisions(store: KeyValueStore) -> None:
    a = Applier(store)
    a.upgrade()
    first = a.put("k", "v", request_id="r1", stamp=1.0)
    again = a.put("k", "v", request_id="r1", stamp=2.0)
    assert again.replayed and again.key_revisions == first.key_revisions == KeyRevisions(1, 1, 1)
    other = a.put("k", "v", request_id="r1", stamp=2.0, prev_revision=1)
    assert other.error == "idempotency_key_reused"  # the revision compare is part of the body


def test_snapshot_round_trip_keeps_the_revisions(store: KeyValueStore, tmp_path: Path) -> None:
    a = Applier(store)
    a.put("before", "1")
    store.commit()
    v1 = store.snapshot_to(tmp_path / "v1.db")
    assert v1.format_version == 1
    a.upgrade()
    a.put("before", "2")
    a.put("after", "1")
    a.delete("after")
    a.put("after", "2")
    store.commit()
    v2 = store.snapshot_to(tmp_path / "v2.db")
    assert v2.format_version == 2
    expected = {k: (r.value, r.create_revision, r.mod_revision, r.version) for k, r in store.list()}
    with KeyValueStore.open(tmp_path / "other.sqlite") as other:
        other.restore_from(tmp_path / "v2.db")
        got = {k: (r.value, r.create_revision, r.mod_revision, r.version) for k, r in other.list()}
        assert got == expected and other.counts_versions
        other.restore_from(tmp_path / "v1.db")  # an older format restores as it is
        assert not other.counts_versions and revisions(other, "before") == (1, 1, None)
        b = Applier(other, v1.applied_index)
        b.upgrade()
        assert revisions(other, "before") == (1, 1, 1)


def test_an_upgrade_rolled_back_with_its_batch_leaves_format_1(store: KeyValueStore) -> None:
    a = Applier(store)
    a.put("k", "1")
    store.commit()
    a.upgrade()
    a.put("k", "2")
    assert store.counts_versions
    store.abort()
    assert not store.counts_versions and revisions(store, "k") == (1, 1, None)
    assert store.apply(a.index + 1, FormatUpgrade(9).encode()).error == "bad_command"


def test_a_format_2_file_with_a_format_1_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite"
    with KeyValueStore.open(path) as s:
        Applier(s).put("a", "1")
        s.commit()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 2")  # says format 2, has no version column
    conn.commit()
    conn.close()
    with pytest.raises(StoreFormatError, match="table kv has columns key, value, create_rev"):
        inspect_snapshot(path)
