"""The key-value state machine's semantics: commands, CAS, revisions, prefix lists.

Ported from the former in-memory store's tests, plus a differential test against that store.
"""

from __future__ import annotations

import random

from bench.memory_store import MemoryKeyValueStore
from raftnode.kv.commands import Command
from raftnode.kv.store import KeyValueStore
from tests.unit.kv.conftest import Applier


def test_put_get_delete_and_revisions(store: KeyValueStore) -> None:
    a = Applier(store)
    r = a.put("a", "1")
    assert r.ok and r.revision == 1 and not r.existed and r.prev_value is None
    r = a.put("a", "2")
    assert r.ok and r.revision == 2 and r.prev_value == "1" and r.existed
    rec = store.get("a")
    assert rec is not None
    assert (rec.value, rec.create_revision, rec.mod_revision) == ("2", 1, 2)
    r = a.delete("a")
    assert r.ok and r.revision == 3 and r.prev_value == "2"
    assert store.get("a") is None
    r = a.delete("a")
    assert not r.ok and r.error == "not_found" and store.revision == 3
    a.put("a", "3")
    rec = store.get("a")
    assert rec is not None and rec.create_revision == 4  # recreated: a new create revision


def test_compare_and_set(store: KeyValueStore) -> None:
    a = Applier(store)
    assert a.put("k", "v1", cas=True, prev_value=None).ok  # must be absent: it is
    r = a.put("k", "v2", cas=True, prev_value=None)  # must be absent: it is not
    assert not r.ok and r.error == "cas_mismatch" and r.current_value == "v1" and r.existed
    r = a.put("k", "v2", cas=True, prev_value="wrong")
    assert not r.ok and r.current_value == "v1"
    assert a.put("k", "v2", cas=True, prev_value="v1").ok
    assert not a.delete("k", cas=True, prev_value="v1").ok
    assert a.delete("k", cas=True, prev_value="v2").ok
    r = a.delete("k", cas=True, prev_value="v2")
    assert not r.ok and r.error == "cas_mismatch" and not r.existed and r.current_value is None
    assert store.revision == 3


def test_prefix_listing_sorted_and_limited(store: KeyValueStore) -> None:
    a = Applier(store)
    for k in ["b/2", "a/1", "b/1", "c", "b/3", "b", "ba"]:
        a.put(k, k.upper())
    assert [k for k, _ in store.list("b/")] == ["b/1", "b/2", "b/3"]
    assert [k for k, _ in store.list("b", 3)] == ["b", "b/1", "b/2"]
    assert [k for k, _ in store.list("")] == ["a/1", "b", "b/1", "b/2", "b/3", "ba", "c"]
    assert store.list("zzz") == []
    assert store.list("b", 0) == []
    a.delete("b/2")
    assert [k for k, _ in store.list("b/")] == ["b/1", "b/3"]
    assert [k for k, _ in store.list("b/", start_after="b/1")] == ["b/3"]
    assert [k for k, _ in store.list("b", 2, start_after="b/1")] == ["b/3", "ba"]
    assert [k for k, _ in store.list("b/", start_after="a")] == ["b/1", "b/3"]  # before prefix
    assert store.list("b/", start_after="c") == []
    assert store.list("b")[0][1].value == "B"


def test_undecodable_command_is_skipped_identically(store: KeyValueStore) -> None:
    for i, data in enumerate(
        [
            b"not json",
            b"\xff\xfe",
            b"[1]",
            b'{"op": "put"}',
            b'{"op": "move", "k": "a"}',
            b'{"op": "put", "k": "a"}',  # a put without a value
            b'{"op": "put", "k": 5, "v": "x"}',
            b'{"op": "put", "k": "a", "v": 5}',
        ],
        start=1,
    ):
        r = store.apply(i, data)
        assert not r.ok and r.error == "bad_command" and r.revision == 0, data
    assert store.revision == 0 and len(store) == 0
    store.commit()
    assert store.applied_index == 8  # skipped entries still count as applied


def test_unicode_keys_and_values_sort_like_python(store: KeyValueStore) -> None:
    a = Applier(store)
    keys = ["ключ/😀", "ключ/a", "z", "é", "\x00nul", "a\uffff", "a\U0001f600"]
    for k in keys:
        a.put(k, k + "=värde")
    assert [k for k, _ in store.list("")] == sorted(keys)
    rec = store.get("ключ/😀")
    assert rec is not None and rec.value == "ключ/😀=värde"
    assert [k for k, _ in store.list("ключ/")] == ["ключ/a", "ключ/😀"]
    assert [k for k, _ in store.list("a")] == ["a\uffff", "a\U0001f600"]
    # A lone surrogate cannot come from Command.encode, but a foreign entry can carry one.
    assert store.apply(99, b'{"op":"put","k":"\\ud800x","v":"1"}').ok
    assert store.get("\ud800x") is not None
    assert [k for k, _ in store.list("")] == sorted([*keys, "\ud800x"])


def test_len_is_a_counter_that_survives_reopen(store: KeyValueStore) -> None:
    a = Applier(store)
    for i in range(10):
        a.put(f"k{i}", "v")
    a.put("k1", "w")
    a.delete("k2")
    a.delete("nope")
    assert len(store) == 9
    store.commit()
    path = store.path
    store.close()
    with KeyValueStore.open(path) as again:
        assert len(again) == 9 and again.revision == 12


def test_same_results_as_the_former_memory_store(store: KeyValueStore) -> None:
    rng = random.Random(3)
    old = MemoryKeyValueStore()
    for i in range(1, 3001):
        k = f"k{rng.randrange(60)}/{rng.randrange(3)}"
        roll = rng.random()
        if roll < 0.5:
            cmd = Command("put", k, str(rng.randrange(5)))
        elif roll < 0.7:
            cmd = Command("delete", k)
        elif roll < 0.85:
            cmd = Command("put", k, str(i), cas=True, prev_value=rng.choice([None, "1", "2"]))
        else:
            cmd = Command("delete", k, cas=True, prev_value=rng.choice([None, "1", "3"]))
        assert store.apply(i, cmd.encode()) == old.apply(i, cmd.encode())
        if i % 97 == 0:
            store.commit()
        if i % 250 == 0:
            p = f"k{rng.randrange(10)}"
            after = rng.choice([None, p + "5", "a", "z"])
            lim = rng.randrange(1, 20)
            assert store.list(p, lim, after) == old.list(p, lim, after)
            assert store.list(p, None, after) == old.list(p, None, after)
    assert store.list("") == old.list("")
    assert store.revision == old.revision and len(store) == len(old)
