"""The quota bounds the logical size; deletes and shrinking puts still work."""

from __future__ import annotations

from pathlib import Path

from raftnode.kv.commands import Command
from raftnode.kv.store import KeyValueStore
from tests.unit.kv.conftest import Applier


def test_quota_refuses_growth_but_allows_shrinking(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite"
    s = KeyValueStore.open(path, max_store_bytes=30)
    a = Applier(s)
    assert a.put("k1", "x" * 8).ok  # 10 bytes
    assert a.put("k2", "x" * 8).ok  # 20
    assert a.put("k3", "x" * 8).ok  # 30: exactly at the quota
    assert s.quota_used_bytes == 30
    assert s.would_exceed_quota(Command("put", "k4", "x"))
    r = a.put("k4", "x")
    assert not r.ok and r.error == "quota_exceeded" and r.revision == 3 and not r.existed
    r = a.put("k1", "x" * 9)  # grows an existing key
    assert not r.ok and r.error == "quota_exceeded" and r.current_value == "x" * 8 and r.existed
    assert s.get("k4") is None and s.get("k1").value == "x" * 8  # type: ignore[union-attr]
    assert s.revision == 3 and s.quota_used_bytes == 30
    # Same size and smaller puts, and deletes, still work.
    assert not s.would_exceed_quota(Command("put", "k1", "y" * 8))
    assert a.put("k1", "y" * 8).ok
    assert a.put("k2", "y").ok and s.quota_used_bytes == 23
    assert not s.would_exceed_quota(Command("delete", "k3"))
    assert a.delete("k3").ok and s.quota_used_bytes == 13
    assert a.put("k4", "x").ok  # room again
    # CAS is checked first: a mismatch answers cas_mismatch, not quota_exceeded.
    r = a.put("k5", "x" * 100, cas=True, prev_value="nope")
    assert r.error == "cas_mismatch"
    s.commit()
    s.close()
    # The size is in the store, so a restarted node decides the same way.
    s = KeyValueStore.open(path, max_store_bytes=30)
    assert s.quota_used_bytes == 16
    assert not Applier(s, 100).put("k6", "x" * 20).ok
    s.close()


def test_quota_counts_utf8_bytes(store: KeyValueStore) -> None:
    a = Applier(store)
    a.put("é", "😀")
    assert store.quota_used_bytes == 2 + 4
    store.commit()
    assert store.disk_usage_bytes() >= 4096  # the files, not the logical size


def test_no_quota_never_refuses(store: KeyValueStore) -> None:
    assert not store.would_exceed_quota(Command("put", "k", "x" * 10_000))
    assert Applier(store).put("k", "x" * 10_000).ok


def test_quota_decisions_are_identical_on_every_node(tmp_path: Path) -> None:
    nodes = [KeyValueStore.open(tmp_path / f"n{i}", max_store_bytes=200) for i in range(2)]
    for i in range(1, 200):
        cmd = Command("put", f"k{i % 17}", "v" * (i % 13)) if i % 5 else Command("delete", "k3")
        results = [n.apply(i, cmd.encode()) for n in nodes]
        assert results[0] == results[1]
    assert nodes[0].list("") == nodes[1].list("")
    for n in nodes:
        n.close()
