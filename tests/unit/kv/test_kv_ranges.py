"""Key ranges (etcd's key/range_end) beside prefixes: paging with start_after, counting."""

from __future__ import annotations

from raftnode.kv.store import KeyRange, KeyValueStore, Listing
from tests.unit.kv.conftest import Applier

KEYS = ["a", "b", "b/1", "b/2", "ba", "c", "d", "\U0001f600"]


def keys(listing: Listing) -> list[str]:
    return [k for k, _ in listing]


def test_ranges_are_half_open_and_page_with_start_after(store: KeyValueStore) -> None:
    a = Applier(store)
    for k in KEYS:
        a.put(k, k)
    bc = KeyRange.between("b", "c")
    assert keys(store.list(key_range=bc)) == ["b", "b/1", "b/2", "ba"]
    assert keys(store.list(key_range=KeyRange.between("c"))) == ["c", "d", "\U0001f600"]
    assert keys(store.list(key_range=KeyRange.between("", "b/"))) == ["a", "b"]
    assert keys(store.list(key_range=bc, start_after="b/1")) == ["b/2", "ba"]
    assert keys(store.list(key_range=bc, start_after="a")) == KEYS[1:5]
    assert keys(store.list(key_range=KeyRange.between("c", "b"))) == []  # empty, as in etcd
    in_both = KeyRange.of_prefix("b").within(KeyRange.between("b/", "bz"))
    assert keys(store.list(key_range=in_both)) == ["b/1", "b/2", "ba"]
    seen: list[str] = []
    cursor = None
    while True:
        page, more = store.page("", 2, 1 << 20, cursor, key_range=KeyRange.between("a", "d"))
        seen += keys(page)
        if not more:
            break
        cursor = page[-1][0]
    assert seen == KEYS[:6]  # every key reached, none twice


def test_count_matches_the_listing(store: KeyValueStore) -> None:
    a = Applier(store)
    for k in KEYS:
        a.put(k, k)
    for selected in (
        KeyRange.between("b", "c"),
        KeyRange.of_prefix("b"),
        KeyRange.of_prefix(""),
    ):
        assert store.count(selected) == len(store.list(key_range=selected))
        assert store.count(selected, start_after="b/1") == len(
            store.list(key_range=selected, start_after="b/1")
        )
    assert store.count(KeyRange.between("x", "y")) == 0
