"""Snapshots: consistent while the writer keeps applying, restorable, inspectable."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from bench.memory_store import MemoryKeyValueStore
from raftnode.kv.commands import Command
from raftnode.kv.store import KeyValueStore, StoreFormatError, inspect_snapshot
from tests.unit.kv.conftest import Applier


def fill(store: KeyValueStore, n: int, start: int = 0) -> Applier:
    a = Applier(store, start)
    for i in range(n):
        a.put(f"key/{i:06d}", f"value-{i}")
        if i % 100 == 99:
            store.commit()
    store.commit()
    return a


@pytest.mark.parametrize("compact", [False, True])
def test_snapshot_to_restore_from_round_trip(
    store: KeyValueStore, tmp_path: Path, compact: bool
) -> None:
    a = fill(store, 1000)
    a.delete("key/000005")
    store.commit()
    info = store.snapshot_to(tmp_path / "snap.db", compact=compact)
    assert not (tmp_path / "snap.db.tmp").exists()
    header = (tmp_path / "snap.db").read_bytes()[:20]
    assert header[18:20] == b"\x01\x01"  # rollback-journal mode: no WAL beside a snapshot
    assert (info.applied_index, info.revision, info.key_count) == (1001, 1001, 999)
    assert info.logical_bytes == store.quota_used_bytes
    data = (tmp_path / "snap.db").read_bytes()
    assert info.size_bytes == len(data) and info.sha256 == hashlib.sha256(data).hexdigest()
    assert inspect_snapshot(tmp_path / "snap.db", verify=True) == info

    with KeyValueStore.open(tmp_path / "other.sqlite") as other:
        Applier(other).put("only-here", "x")
        other.commit()
        other.restore_from(tmp_path / "snap.db")
        assert other.applied_index == 1001 and other.revision == 1001 and len(other) == 999
        assert other.get("only-here") is None
        assert other.list("") == store.list("")
        assert other.quota_used_bytes == store.quota_used_bytes
        # The restored store goes on applying from the snapshot's index, and survives reopen.
        Applier(other, 1001).put("after", "1")
        other.commit()
        path = other.path
    with KeyValueStore.open(path) as again:
        assert again.applied_index == 1002 and again.get("after") is not None
        assert len(again) == 1000


def test_snapshot_is_the_last_commit_not_the_open_batch(
    store: KeyValueStore, tmp_path: Path
) -> None:
    a = fill(store, 10)
    a.put("uncommitted", "x")
    info = store.snapshot_to(tmp_path / "snap.db")
    assert info.applied_index == 10 and info.key_count == 10


@pytest.mark.parametrize("compact", [False, True])
def test_snapshot_while_applies_continue_equals_state_at_its_index(
    store: KeyValueStore, tmp_path: Path, compact: bool
) -> None:
    """The loop keeps applying and committing while a worker thread takes the snapshot."""
    a = fill(store, 20_000)
    # A reference copy of every committed state, keyed by applied index.
    ref = MemoryKeyValueStore()
    for k, rec in store.list(""):
        ref.apply(0, Command("put", k, rec.value).encode())
    history: dict[int, list[tuple[str, str]]] = {}
    result: dict[str, object] = {}

    def take() -> None:
        result["info"] = store.snapshot_to(tmp_path / "snap.db", compact=compact)

    history[store.applied_index] = [(k, r.value) for k, r in ref.list("")]
    t = threading.Thread(target=take)
    t.start()
    batches = 0
    while t.is_alive() or batches < 3:
        for j in range(50):
            k = f"key/{(batches * 50 + j) * 7 % 20_000:06d}"
            v = f"new-{batches}-{j}"
            a.put(k, v)
            ref.apply(0, Command("put", k, v).encode())
        store.commit()
        history[store.applied_index] = [(k, r.value) for k, r in ref.list("")]
        batches += 1
    t.join()
    info = result["info"]
    assert isinstance(info, type(inspect_snapshot(tmp_path / "snap.db")))
    assert info.applied_index in history
    with KeyValueStore.open(tmp_path / "restored.sqlite") as r:
        r.restore_from(tmp_path / "snap.db")
        assert r.applied_index == info.applied_index
        assert [(k, rec.value) for k, rec in r.list("")] == history[info.applied_index]


def test_stage_then_finish_restore(store: KeyValueStore, tmp_path: Path) -> None:
    fill(store, 30)
    sent = store.snapshot_to(tmp_path / "snap.db")
    with KeyValueStore.open(tmp_path / "b.sqlite") as b:
        with pytest.raises(Exception, match="no staged snapshot"):
            b.finish_restore()
        with pytest.raises(StoreFormatError, match=r"snap\.db: .*checksum mismatch"):
            b.stage_restore(tmp_path / "snap.db", expect_sha256="0" * 64)
        assert not b.path.with_name("b.sqlite.restore").exists()
        info = b.stage_restore(tmp_path / "snap.db", expect_sha256=sent.sha256)
        assert info == sent
        assert info.key_count == 30 and len(b) == 0  # still the old state until the swap
        b.finish_restore()
        assert len(b) == 30 and b.applied_index == 30


def test_restore_refuses_a_bad_file_and_keeps_the_state(
    store: KeyValueStore, tmp_path: Path
) -> None:
    fill(store, 5)
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"hello" * 100)
    with pytest.raises(StoreFormatError, match=r"bad\.db"):
        store.restore_from(bad)
    assert len(store) == 5 and store.applied_index == 5


def test_restore_of_a_damaged_snapshot_is_refused(store: KeyValueStore, tmp_path: Path) -> None:
    fill(store, 2000)
    info = store.snapshot_to(tmp_path / "snap.db")
    raw = bytearray((tmp_path / "snap.db").read_bytes())
    mid = info.size_bytes // 2
    raw[mid : mid + 512] = b"\xa5" * 512
    (tmp_path / "damaged.db").write_bytes(bytes(raw))
    with KeyValueStore.open(tmp_path / "b.sqlite") as b:
        with pytest.raises(StoreFormatError, match=r"damaged\.db"):
            b.restore_from(tmp_path / "damaged.db")
        assert len(b) == 0
