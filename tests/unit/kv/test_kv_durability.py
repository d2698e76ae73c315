"""Restart is open-and-go: what commit() stored survives, an uncommitted batch does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftnode.kv.store import KeyValueStore
from tests.unit.kv.conftest import Applier


def test_committed_batches_survive_reopen_uncommitted_do_not(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite"
    s = KeyValueStore.open(path)
    assert s.applied_index == 0 and s.revision == 0
    a = Applier(s)
    for i in range(50):
        a.put(f"k{i}", str(i))
    s.commit()
    assert s.applied_index == 50
    a.delete("k0")
    a.put("late", "x")
    assert s.get("late") is not None  # reads see the open batch...
    assert s.applied_index == 50  # ...but applied_index is what commit() stored
    s.close()  # no commit: the batch is dropped

    s = KeyValueStore.open(path)
    assert s.applied_index == 50 and s.revision == 50 and len(s) == 50
    assert s.get("late") is None
    rec = s.get("k0")
    assert rec is not None and rec.value == "0"
    assert s.quota_used_bytes == sum(len(f"k{i}") + len(str(i)) for i in range(50))
    s.close()


def test_process_dies_without_close(tmp_path: Path) -> None:
    """A crash (no close, no checkpoint): a second handle still sees every commit."""
    path = tmp_path / "kv.sqlite"
    s = KeyValueStore.open(path)
    a = Applier(s)
    a.put("a", "1")
    s.commit()
    a.put("b", "2")  # uncommitted, in the writer's open transaction
    other = KeyValueStore.open(path)  # as a restarted process would
    assert other.applied_index == 1 and other.get("a") is not None and other.get("b") is None
    other.close()
    s.close()


def test_commit_records_an_explicit_index_without_data(store: KeyValueStore) -> None:
    Applier(store).put("a", "1")
    store.commit(applied_index=7)  # e.g. a configuration change after the data entry
    assert store.applied_index == 7
    store.commit(applied_index=9)  # nothing applied at all: still recorded
    assert store.applied_index == 9
    store.commit(applied_index=3)  # never goes backwards
    assert store.applied_index == 9


def test_abort_returns_to_the_last_commit(store: KeyValueStore) -> None:
    a = Applier(store)
    a.put("a", "1")
    store.commit()
    a.put("b", "2")
    a.delete("a")
    store.abort()
    assert store.revision == 1 and len(store) == 1 and store.get("a") is not None
    assert store.get("b") is None and store.applied_index == 1


def test_sync_makes_the_committed_index_durable(store: KeyValueStore) -> None:
    assert store.durable_index() == 0
    a = Applier(store)
    a.put("a", "1")
    store.commit()
    assert store.durable_index() == 0  # NORMAL: committed, not yet fsynced
    a.put("b", "2")  # an open batch is not durable
    assert store.sync() == 1 and store.durable_index() == 1
    store.commit()
    assert store.durable_index() == 1
    assert store.sync() == 2


def test_open_reports_durable_after_its_own_sync(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite"
    with KeyValueStore.open(path) as s:
        Applier(s).put("a", "1")
        s.commit()
    with KeyValueStore.open(path) as s:
        assert s.durable_index() == 1


def test_full_synchronous_mode_is_durable_at_commit(tmp_path: Path) -> None:
    with KeyValueStore.open(tmp_path / "kv.sqlite", synchronous="FULL") as s:
        Applier(s).put("a", "1")
        s.commit()
        assert s.durable_index() == 1


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        KeyValueStore.open(tmp_path / "a", max_store_bytes=0)
    with pytest.raises(ValueError):
        KeyValueStore.open(tmp_path / "b", synchronous="OFF")  # type: ignore[arg-type]


def test_sync_from_a_worker_thread_while_the_loop_commits(store: KeyValueStore) -> None:
    import threading

    seen: list[int] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            while not stop.is_set():
                seen.append(store.sync())
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=worker)
    t.start()
    a = Applier(store)
    committed = []
    for _ in range(100):
        for _ in range(20):
            a.put(f"k{a.index % 300}", str(a.index))
        store.commit()
        committed.append(store.applied_index)
    stop.set()
    t.join()
    assert not errors
    assert seen == sorted(seen)  # durable index never goes backwards
    assert all(s in committed or s == 0 for s in seen)  # always a committed batch boundary
    assert store.sync() == store.applied_index == 2000
