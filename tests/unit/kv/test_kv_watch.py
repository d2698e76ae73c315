"""Watch delivery on an in-memory cluster: every committed change reaches every watcher whose
range it touches, once, in revision order, on every node, across a leader change; a start older
than the window is refused as compacted; a slow watcher is cancelled, a fast one is not."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from raftnode.kv.commands import Command, Compare, Txn, TxnOp
from raftnode.kv.history import Change, HistoryLimits
from raftnode.kv.service import KeyValueService
from raftnode.kv.store import KeyRange, KeyValueStore
from raftnode.kv.watch import Cancelled, Compacted, CompactedError, Progress, Watcher, WatchHub
from raftnode.testing import make_cluster, run_virtual

Seen = list[tuple[int, str, str]]


async def collect(watcher: Watcher, seen: Seen, ends: list[object]) -> None:
    async for item in watcher.items(progress_seconds=0.2):
        if isinstance(item, list):
            seen.extend((c.revision, c.kind, c.key) for c in item)
        elif isinstance(item, Progress):
            ends.append(item)
        else:
            ends.append(item)
            return


def expected(store: KeyValueStore, key_range: KeyRange, start: int) -> Seen:
    assert store.history is not None
    changes: list[Change] = store.history.changes(start - 1, 1_000_000)
    return [
        (c.revision, c.kind, c.key)
        for c in changes
        if c.key.encode() >= key_range.low
        and (key_range.high is None or c.key.encode() < key_range.high)
    ]


RANGES = [
    KeyRange.of_prefix("a/"),
    KeyRange.between("a/1", "a/1\0"),
    KeyRange.of_prefix(""),
    KeyRange.between("b", "c"),
]


def test_every_change_reaches_every_matching_watcher_once_in_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        def store(node_id: int) -> KeyValueStore:
            return KeyValueStore.open(tmp_path / f"n{node_id}.sqlite")

        async with await make_cluster(3, store, data_dir=tmp_path) as cluster:
            leader = await cluster.wait_for_leader()
            service = KeyValueService(leader, cluster.state_machines[leader.node_id], leader_wait=1)
            deadline = time.monotonic() + 30.0
            await service.write(Command("put", "first", "x"), deadline)  # format 3 from here
            await asyncio.sleep(0.5)
            hubs = {
                i: WatchHub(n, cluster.state_machines[i], buffer_events=1000, max_watchers=100)
                for i, n in cluster.nodes.items()
            }
            watchers = []
            for i, hub in hubs.items():
                for r in RANGES:
                    seen: Seen = []
                    ends: list[object] = []
                    start = 2 if r.low != b"b" else None  # one starts "now", the rest in the past
                    w = hub.open(r, start)
                    task = asyncio.ensure_future(collect(w, seen, ends))
                    watchers.append((i, r, w.next_revision, seen, ends, task))

            async def writes(svc: KeyValueService, tag: str) -> None:
                for n in range(15):
                    await svc.write(Command("put", f"a/{n % 4}", f"{tag}{n}"), deadline)
                    await svc.write(Command("put", f"b{n % 3}", tag), deadline)
                    if n % 5 == 0:
                        await svc.write(Command("delete", f"a/{n % 4}"), deadline)
                    if n % 4 == 0:
                        txn = Txn(
                            (Compare("b0", "exists", "equal", True),),
                            (
                                TxnOp("put", "a/1", tag),
                                TxnOp("delete", "b0"),
                                TxnOp("put", "z", "1"),
                            ),
                        )
                        await svc.write(txn, deadline)

            await writes(service, "one")
            cluster.isolate(leader.node_id)
            new = await cluster.wait_for_leader(excluding=[leader.node_id])
            service = KeyValueService(new, cluster.state_machines[new.node_id], leader_wait=1)
            await writes(service, "two")
            cluster.heal()
            final = cluster.state_machines[new.node_id].revision
            for _ in range(400):  # bounded, in virtual time
                if all(
                    any(isinstance(e, Progress) and e.revision >= final for e in ends)
                    for *_, ends, _t in watchers
                ):
                    break
                await asyncio.sleep(0.05)
            reference = cluster.state_machines[new.node_id]
            for node_id, r, start, seen, ends, task in watchers:
                want = expected(reference, r, start)
                assert want, (node_id, r)
                assert seen == want, (node_id, r)  # once each, in revision order, no gap
                assert not any(isinstance(e, Cancelled | Compacted) for e in ends)
                task.cancel()
            for hub in hubs.values():
                hub.close("test over")

    run_virtual(scenario())


def test_a_start_older_than_the_window_is_compacted_and_a_slow_watcher_is_cancelled(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        def store(node_id: int) -> KeyValueStore:
            return KeyValueStore.open(
                tmp_path / f"n{node_id}.sqlite", history=HistoryLimits(max_revisions=20)
            )

        async with await make_cluster(1, store, data_dir=tmp_path) as cluster:
            leader = await cluster.wait_for_leader()
            kv = cluster.state_machines[leader.node_id]
            service = KeyValueService(leader, kv, leader_wait=1)
            deadline = time.monotonic() + 30.0
            for n in range(30):
                await service.write(Command("put", "k", str(n)), deadline)
            hub = WatchHub(leader, kv, buffer_events=5, max_watchers=2)
            with pytest.raises(CompactedError) as info:
                hub.open(KeyRange.of_prefix(""), 3)
            assert info.value.compact_revision == 10
            slow = hub.open(KeyRange.of_prefix(""), None)
            fast = hub.open(KeyRange.of_prefix(""), None)
            fast_seen: Seen = []
            fast_ends: list[object] = []
            fast_task = asyncio.ensure_future(collect(fast, fast_seen, fast_ends))
            slow_items = slow.items(progress_seconds=0.2)  # never read while the writes run
            for n in range(10):
                await service.write(Command("put", "k", f"late{n}"), deadline)
                await asyncio.sleep(0.01)
            assert slow.ended and slow not in set(hub._watchers)  # freed at once
            end = await anext(slow_items)
            assert isinstance(end, Cancelled) and "watch.buffer_events" in end.reason
            assert end.resume_revision == 31  # nothing was handed over: resume from the first
            await asyncio.sleep(0.5)
            assert [r for r, _, _ in fast_seen] == list(range(31, 41))
            assert not fast.ended
            fast_task.cancel()
            hub.close("test over")

    run_virtual(scenario())


def test_a_watcher_on_a_follower_that_installs_a_snapshot_misses_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        def store(node_id: int) -> KeyValueStore:
            return KeyValueStore.open(tmp_path / f"n{node_id}.sqlite")

        async with await make_cluster(
            3, store, data_dir=tmp_path, snapshot_every_entries=10
        ) as cluster:
            leader = await cluster.wait_for_leader()
            service = KeyValueService(leader, cluster.state_machines[leader.node_id], leader_wait=1)
            deadline = time.monotonic() + 30.0
            await service.write(Command("put", "first", "x"), deadline)
            await asyncio.sleep(0.5)
            follower = next(i for i in cluster.nodes if i != leader.node_id)
            kv = cluster.state_machines[follower]
            hub = WatchHub(cluster.nodes[follower], kv, buffer_events=1000, max_watchers=10)
            seen: Seen = []
            ends: list[object] = []
            task = asyncio.ensure_future(collect(hub.open(KeyRange.of_prefix(""), 2), seen, ends))
            restores: list[int] = []
            restore = kv.finish_restore

            def counted_restore() -> None:
                restores.append(kv.applied_index)
                restore()

            kv.finish_restore = counted_restore  # type: ignore[method-assign]
            cluster.isolate(follower)
            # More than the 1,000 entries a compaction retains: the follower needs a snapshot.
            for batch in range(24):
                await asyncio.gather(
                    *(
                        service.write(Command("put", f"k{n % 7}", str(n)), deadline)
                        for n in range(batch * 50, batch * 50 + 50)
                    )
                )
            cluster.heal()
            final = cluster.state_machines[leader.node_id].revision
            for _ in range(400):  # bounded, in virtual time
                if any(isinstance(e, Progress) and e.revision >= final for e in ends):
                    break
                await asyncio.sleep(0.05)
            assert restores, "the follower caught up by log entries, not by a snapshot"
            assert kv.revision == final
            assert seen == expected(cluster.state_machines[leader.node_id], KeyRange(), 2), ends[
                -3:
            ]
            assert not any(isinstance(e, Cancelled | Compacted) for e in ends)
            task.cancel()
            hub.close("test over")

    run_virtual(scenario())


def test_a_change_queued_while_the_progress_timer_fires_goes_out_before_any_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The progress timeout fires; before the stream resumes, the hub queues a change (the
    two are ready in the same turn of a busy event loop). The change must go first: a progress
    event naming its revision ahead of it tells the client it has it, and the client drops the
    change as a repeat (a lock waiter then never sees its predecessor's delete)."""
    hub = WatchHub(None, None, buffer_events=10, max_watchers=10)  # type: ignore[arg-type]
    hub._position = 7
    watcher = Watcher(hub, KeyRange.between("lock/a", "lock/a\0"), next_revision=8)
    watcher.synced = True
    delete = Change(8, "delete", "lock/a", None, 0, 8, 0)

    async def times_out_as_the_hub_dispatches(aw: object, timeout: float) -> None:
        aw.close()  # type: ignore[attr-defined]
        watcher.push(delete)  # what WatchHub.dispatch does for revision 8
        hub._position = 8
        watcher.caught_up_to(8)
        raise TimeoutError

    async def first_item() -> object:
        monkeypatch.setattr(asyncio, "wait_for", times_out_as_the_hub_dispatches)
        items = watcher.items(progress_seconds=0.2)
        try:
            return await anext(items)
        finally:
            monkeypatch.undo()

    assert asyncio.run(first_item()) == [delete]
