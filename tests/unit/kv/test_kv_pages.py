"""List pages stop at a count and at a size in bytes, and every key stays reachable."""

from __future__ import annotations

from raftnode.kv.store import KeyValueStore
from tests.unit.kv.conftest import Applier


def test_a_page_stops_before_its_bytes_pass_the_cap(store: KeyValueStore) -> None:
    a = Applier(store)
    for i in range(10):
        a.put(f"p/{i}", "v" * 100)  # 103 bytes each
    items, more = store.page("p/", 100, 350)
    assert [k for k, _ in items] == ["p/0", "p/1", "p/2"] and more
    items, more = store.page("p/", 3, 10_000)
    assert len(items) == 3 and more
    items, more = store.page("p/", 100, 10_000)
    assert len(items) == 10 and not more


def test_one_key_larger_than_the_cap_still_makes_a_page(store: KeyValueStore) -> None:
    a = Applier(store)
    a.put("big", "x" * 5000)
    a.put("c", "y")
    items, more = store.page("", 100, 1000)
    assert [k for k, _ in items] == ["big"] and more
    items, more = store.page("", 100, 1000, start_after="big")
    assert [k for k, _ in items] == ["c"] and not more


def test_paging_by_bytes_reaches_every_key(store: KeyValueStore) -> None:
    a = Applier(store)
    keys = [f"k{i:03}" for i in range(200)]
    for k in keys:
        a.put(k, "z" * (int(k[1:]) % 37))
    seen: list[str] = []
    after: str | None = None
    while True:
        items, more = store.page("k", 1000, 300, start_after=after)
        seen += [k for k, _ in items]
        if not more:
            break
        after = items[-1][0]
    assert seen == keys
