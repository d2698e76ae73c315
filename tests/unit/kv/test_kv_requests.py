"""Request ids (idempotency keys): a retried command applies at most once, on every node alike,
its first outcome is returned again, and remembered ids expire by count and by their stamps."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftnode.kv import store as store_module
from raftnode.kv.store import KeyValueStore
from tests.unit.kv.conftest import Applier


def test_a_retried_write_applies_once_and_returns_its_first_outcome(store: KeyValueStore) -> None:
    a = Applier(store)
    first = a.put("k", "v1", request_id="req-1", stamp=100.0)
    assert first.ok and first.revision == 1 and not first.replayed
    a.put("k", "v2")  # another client's write in between
    again = a.put("k", "v1", request_id="req-1", stamp=101.0)
    assert again.replayed and again.ok and again.revision == 1
    record = store.get("k")
    assert record is not None and record.value == "v2"  # the retry did not overwrite
    assert store.revision == 2


def test_failed_outcomes_are_replayed_too(store: KeyValueStore) -> None:
    a = Applier(store)
    r = a.delete("missing", request_id="del-1", stamp=1.0)
    assert r.error == "not_found"
    a.put("missing", "now here")
    again = a.delete("missing", request_id="del-1", stamp=2.0)
    assert again.replayed and again.error == "not_found"
    assert store.get("missing") is not None


def test_ids_survive_restart_and_snapshots(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite"
    s = KeyValueStore.open(path)
    a = Applier(s)
    a.put("k", "v", request_id="r", stamp=1.0)
    s.commit()
    s.snapshot_to(tmp_path / "snap.sqlite")
    s.close()
    reopened = KeyValueStore.open(path)
    assert Applier(reopened, start=1).put("k", "v", request_id="r", stamp=2.0).replayed
    reopened.close()
    other = KeyValueStore.open(tmp_path / "other.sqlite")
    other.restore_from(tmp_path / "snap.sqlite")
    assert Applier(other, start=1).put("k", "v", request_id="r", stamp=2.0).replayed
    other.close()


def test_oldest_ids_are_forgotten_past_the_count(
    store: KeyValueStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "REQUEST_RETENTION_COUNT", 3)
    a = Applier(store)
    for i in range(5):
        a.put(f"k{i}", "v", request_id=f"r{i}", stamp=1.0)
    assert not a.put("k0", "v", request_id="r0", stamp=1.0).replayed  # forgotten
    assert a.put("k4", "v", request_id="r4", stamp=1.0).replayed


def test_ids_expire_by_the_commands_own_stamps(
    store: KeyValueStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "_EXPIRE_EVERY", 2)
    a = Applier(store)
    a.put("k", "v", request_id="old", stamp=0.0)
    later = store_module.REQUEST_RETENTION_SECONDS + 10
    a.put("x", "v", request_id="new", stamp=later)  # index 2: expires stamps < 10
    assert not a.put("k", "v", request_id="old", stamp=later).replayed
    assert a.put("x", "v", request_id="new", stamp=later).replayed


def test_a_key_reused_for_another_command_is_refused_and_discloses_nothing(
    store: KeyValueStore,
) -> None:
    a = Applier(store)
    assert a.put("secret", "old", stamp=1.0).ok
    first = a.put("secret", "new", request_id="shared", stamp=2.0)
    assert first.ok and first.prev_value == "old"
    for other in (
        lambda: a.put("idem-other", "x", request_id="shared", stamp=3.0),
        lambda: a.put("secret", "other value", request_id="shared", stamp=3.0),
        lambda: a.delete("secret", request_id="shared", stamp=3.0),
    ):
        r = other()
        assert not r.ok and r.error == "idempotency_key_reused" and not r.replayed
        assert r.prev_value is None and r.current_value is None
    assert store.get("idem-other") is None
    record = store.get("secret")
    assert record is not None and record.value == "new"
    assert store.revision == 2
    assert a.put("secret", "new", request_id="shared", stamp=4.0).replayed  # the same retry


def test_remembered_outcomes_count_against_the_quota(tmp_path: Path) -> None:
    s = KeyValueStore.open(tmp_path / "kv.sqlite", max_store_bytes=1000)
    a = Applier(s)
    assert a.put("k", "v", stamp=1.0).ok
    plain = s.quota_used_bytes
    assert plain == 2
    for i in range(5):
        assert a.put("k", "v", request_id=f"id-{i}", stamp=1.0).ok
    assert s.quota_used_bytes > plain + 5 * 32
    counted = s.quota_used_bytes
    s.commit()
    s.close()
    reopened = KeyValueStore.open(tmp_path / "kv.sqlite", max_store_bytes=1000)
    assert reopened.quota_used_bytes == counted  # recounted from the table alike
    b = Applier(reopened, start=a.index)
    grown = 0
    while b.put(f"fill-{grown}", "x" * 20, request_id=f"fill-{grown}", stamp=2.0).ok:
        grown += 1
        assert grown < 50
    assert grown > 0
    # The refused write's own outcome is remembered too (for its retries): one row past it.
    assert reopened.quota_used_bytes <= 1000 + 200
    refused = b.put("more", "x", request_id=f"fill-{grown}", stamp=2.0)
    assert refused.error == "idempotency_key_reused"
    reopened.close()


def test_stores_from_before_fingerprints_open_and_keep_their_ids(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "kv.sqlite"
    s = KeyValueStore.open(path)
    Applier(s).put("k", "v", request_id="old", stamp=1.0)
    s.commit()
    s.close()
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE requests DROP COLUMN fp")
    conn.commit()
    conn.close()
    reopened = KeyValueStore.open(path)
    assert Applier(reopened, start=1).put("k", "v", request_id="old", stamp=2.0).replayed
    assert Applier(reopened, start=2).put("k", "w", request_id="new", stamp=2.0).ok
    assert Applier(reopened, start=3).put("x", "w", request_id="new", stamp=2.0).error == (
        "idempotency_key_reused"
    )
    reopened.close()
