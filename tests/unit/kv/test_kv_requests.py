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
    assert Applier(reopened, start=1).put("k", "x", request_id="r", stamp=2.0).replayed
    reopened.close()
    other = KeyValueStore.open(tmp_path / "other.sqlite")
    other.restore_from(tmp_path / "snap.sqlite")
    assert Applier(other, start=1).put("k", "x", request_id="r", stamp=2.0).replayed
    other.close()


def test_oldest_ids_are_forgotten_past_the_count(
    store: KeyValueStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "REQUEST_RETENTION_COUNT", 3)
    a = Applier(store)
    for i in range(5):
        a.put(f"k{i}", "v", request_id=f"r{i}", stamp=1.0)
    assert not a.put("k0", "again", request_id="r0", stamp=1.0).replayed  # forgotten
    assert a.put("k4", "again", request_id="r4", stamp=1.0).replayed


def test_ids_expire_by_the_commands_own_stamps(
    store: KeyValueStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "_EXPIRE_EVERY", 2)
    a = Applier(store)
    a.put("k", "v", request_id="old", stamp=0.0)
    later = store_module.REQUEST_RETENTION_SECONDS + 10
    a.put("x", "v", request_id="new", stamp=later)  # index 2: expires stamps < 10
    assert not a.put("k", "v2", request_id="old", stamp=later).replayed
    assert a.put("x", "v", request_id="new", stamp=later).replayed
