"""The key-value state machine: commands, CAS, revisions, prefix lists, snapshot/restore."""

from __future__ import annotations

import random

from raftnode.kv.commands import Command
from raftnode.kv.store import KeyValueStore


def put(s: KeyValueStore, k: str, v: str, **kw):
    return s.apply(0, Command("put", k, v, **kw).encode())


def delete(s: KeyValueStore, k: str, **kw):
    return s.apply(0, Command("delete", k, **kw).encode())


def test_put_get_delete_and_revisions() -> None:
    s = KeyValueStore()
    r = put(s, "a", "1")
    assert r.ok and r.revision == 1 and not r.existed
    r = put(s, "a", "2")
    assert r.ok and r.revision == 2 and r.prev_value == "1"
    rec = s.get("a")
    assert (
        rec is not None and rec.value == "2" and rec.create_revision == 1 and rec.mod_revision == 2
    )
    r = delete(s, "a")
    assert r.ok and r.revision == 3 and r.prev_value == "2"
    assert s.get("a") is None
    r = delete(s, "a")
    assert not r.ok and r.error == "not_found" and s.revision == 3


def test_compare_and_set() -> None:
    s = KeyValueStore()
    assert put(s, "k", "v1", cas=True, prev_value=None).ok  # must be absent: it is
    r = put(s, "k", "v2", cas=True, prev_value=None)  # must be absent: it is not
    assert not r.ok and r.error == "cas_mismatch" and r.current_value == "v1"
    r = put(s, "k", "v2", cas=True, prev_value="wrong")
    assert not r.ok and r.current_value == "v1"
    assert put(s, "k", "v2", cas=True, prev_value="v1").ok
    assert not delete(s, "k", cas=True, prev_value="v1").ok
    assert delete(s, "k", cas=True, prev_value="v2").ok
    assert s.revision == 3


def test_prefix_listing_sorted_and_limited() -> None:
    s = KeyValueStore()
    for k in ["b/2", "a/1", "b/1", "c", "b/3", "b", "ba"]:
        put(s, k, k.upper())
    assert [k for k, _ in s.list("b/")] == ["b/1", "b/2", "b/3"]
    assert [k for k, _ in s.list("b", 3)] == ["b", "b/1", "b/2"]
    assert [k for k, _ in s.list("")] == ["a/1", "b", "b/1", "b/2", "b/3", "ba", "c"]
    assert s.list("zzz") == []
    delete(s, "b/2")
    assert [k for k, _ in s.list("b/")] == ["b/1", "b/3"]


def test_snapshot_restore_round_trip_and_determinism() -> None:
    rng = random.Random(3)
    a, b = KeyValueStore(), KeyValueStore()
    for i in range(500):
        k = f"k{rng.randrange(50)}"
        cmd = Command("put", k, str(i)) if rng.random() < 0.7 else Command("delete", k)
        ra, rb = a.apply(i, cmd.encode()), b.apply(i, cmd.encode())
        assert ra == rb
    c = KeyValueStore()
    c.restore(a.snapshot())
    assert c.snapshot() == a.snapshot()
    assert c.revision == a.revision
    assert c.list("") == a.list("")
    c.restore(b"")
    assert len(c) == 0 and c.revision == 0


def test_undecodable_command_is_skipped_identically() -> None:
    s = KeyValueStore()
    r = s.apply(5, b"not json")
    assert not r.ok and r.error == "bad_command" and s.revision == 0


def test_unicode_keys_and_values() -> None:
    s = KeyValueStore()
    put(s, "ключ/😀", "värde")
    assert s.get("ключ/😀").value == "värde"  # type: ignore[union-attr]
    c = KeyValueStore()
    c.restore(s.snapshot())
    assert c.get("ключ/😀").value == "värde"  # type: ignore[union-attr]
