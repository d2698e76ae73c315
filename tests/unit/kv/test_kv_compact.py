"""Compaction on command (the ``Compact`` entry): the changes up to R leave the window and R
becomes the compact revision, the same way on every node; a revision ahead of the store is
refused with nothing changed, one already compacted is a no-op; an older member holds it back;
a watcher behind the new window ends with ``compacted``, one at the head goes on."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from raftnode.http.admin_compact import compact
from raftnode.http.errors import ApiError
from raftnode.kv.commands import (
    HISTORY_FORMAT,
    Command,
    Compact,
    CompactResult,
    FormatUpgrade,
    Outcome,
    decode_entry,
)
from raftnode.kv.history import PURGE_STEP_ROWS
from raftnode.kv.service import KeyValueService, UpgradeInProgress
from raftnode.kv.store import KeyRange, KeyValueStore
from raftnode.kv.watch import Compacted, Progress, WatchHub
from raftnode.testing import make_cluster, run_virtual
from tests.unit.kv.conftest import Applier


def compacted(a: Applier, rev: int) -> CompactResult:
    result = a.raw(Compact(rev).encode())
    assert isinstance(result, CompactResult), result
    return result


def test_compact_drops_the_changes_up_to_r_and_survives_reopening(tmp_path: Path) -> None:
    store = KeyValueStore.open(tmp_path / "kv.sqlite")
    a = Applier(store)
    assert a.raw(FormatUpgrade(HISTORY_FORMAT).encode()).ok
    for n in range(10):
        a.put(f"k{n % 3}", str(n))
    assert store.history is not None and store.history.compact_revision == 0
    result = compacted(a, 6)
    assert (result.ok, result.compacted, result.compact_revision, result.revision) == (
        True,
        True,
        6,
        10,
    )
    assert [c.revision for c in store.history.changes(0, 100)] == [7, 8, 9, 10]
    assert store.history.rows == 4
    again = compacted(a, 4)  # already past it: nothing happens, the answer tells where it is
    assert (again.ok, again.compacted, again.compact_revision) == (True, False, 6)
    ahead = compacted(a, 11)
    assert ahead.error == Outcome.FUTURE_REVISION and ahead.compact_revision == 6
    assert len(store.history.changes(0, 100)) == 4
    store.commit()
    store.close()
    reopened = KeyValueStore.open(tmp_path / "kv.sqlite")
    assert reopened.history is not None and reopened.history.compact_revision == 6
    assert [c.revision for c in reopened.history.changes(0, 100)] == [7, 8, 9, 10]
    assert reopened.history.rows == 4
    reopened.close()


def test_compact_of_a_store_without_history_or_a_foreign_revision_changes_nothing(
    tmp_path: Path,
) -> None:
    store = KeyValueStore.open(tmp_path / "kv.sqlite")
    a = Applier(store)
    a.put("k", "v")
    assert compacted(a, 1).error == Outcome.NO_HISTORY
    for bad in (b'{"op":"compact","rev":0}', b'{"op":"compact","rev":true}', b'{"op":"compact"}'):
        result = a.raw(bad)
        assert result.error == Outcome.BAD_COMMAND, bad
    assert store.revision == 1 and store.get("k") is not None
    assert decode_entry(Compact(5).encode()) == Compact(5)
    store.close()


def test_every_node_applies_the_compaction_alike_once_every_member_speaks_7(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        def store(node_id: int) -> KeyValueStore:
            return KeyValueStore.open(tmp_path / f"n{node_id}.sqlite")

        async with await make_cluster(3, store, data_dir=tmp_path) as cluster:
            cluster.network.versions[3] = 6  # node 3 runs the release with leases
            leader = await cluster.wait_for_leader()
            kv = cluster.state_machines[leader.node_id]
            service = KeyValueService(leader, kv, leader_wait=1.0)
            deadline = time.monotonic() + 20.0
            for n in range(12):
                await service.write(Command("put", f"k{n % 4}", str(n)), deadline)
            with pytest.raises(UpgradeInProgress, match=r"node 3.*peer protocol 7"):
                await service.write(Compact(5), deadline)
            assert kv.history is not None and kv.history.compact_revision == 0
            del cluster.network.versions[3]  # node 3 upgraded
            with pytest.raises(ApiError) as refused:
                await compact(service, kv.revision + 1, deadline)
            assert refused.value.status == 409 and f"from 1 to {kv.revision}" in str(refused.value)
            answer = await compact(service, 8, deadline)
            assert answer is not None and answer.status == 200
            assert b'"compact_revision":8' in answer.body and b'"compacted":true' in answer.body
            again = await compact(service, 3, deadline)
            assert again is not None and b'"compacted":false' in again.body
            target = leader.applied_index
            for _ in range(100):  # bounded, in virtual time: followers apply up to the leader
                if all(n.applied_index >= target for n in cluster.nodes.values()):
                    break
                await asyncio.sleep(0.05)
            windows = []
            for s in cluster.state_machines.values():
                assert s.history is not None and s.history.compact_revision == 8
                windows.append(s.history.changes(0, 100))
            assert [c.revision for c in windows[0]] == list(range(9, 13))
            assert windows[0] == windows[1] == windows[2]

    run_virtual(scenario())


def test_a_watcher_behind_the_compaction_ends_compacted_one_at_the_head_goes_on(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        def store(node_id: int) -> KeyValueStore:
            return KeyValueStore.open(tmp_path / f"n{node_id}.sqlite")

        async with await make_cluster(1, store, data_dir=tmp_path) as cluster:
            leader = await cluster.wait_for_leader()
            kv = cluster.state_machines[leader.node_id]
            service = KeyValueService(leader, kv, leader_wait=1)
            deadline = time.monotonic() + 30.0
            for n in range(10):
                await service.write(Command("put", "k", str(n)), deadline)
            sent: list[int] = []
            cancelled: list[str] = []
            hub = WatchHub(
                leader,
                kv,
                buffer_events=100,
                max_watchers=4,
                on_sent=sent.append,
                on_cancelled=cancelled.append,
            )
            behind = hub.open(KeyRange.of_prefix(""), 2)  # catching up, not read yet
            head = hub.open(KeyRange.of_prefix(""), None)
            await service.write(Compact(7), deadline)
            await service.write(Command("put", "k", "after"), deadline)
            end = await anext(behind.items(progress_seconds=0.2))
            assert end == Compacted(7) and behind.ended
            items = head.items(progress_seconds=0.2)
            batch = await anext(items)
            assert isinstance(batch, list) and [c.revision for c in batch] == [11]
            assert isinstance(await anext(items), Progress) and not head.ended
            assert cancelled == ["compacted"] and sum(sent) == 1
            assert len(hub) == 1
            hub.close("test over")
            assert cancelled == ["compacted", "shutdown"]

    run_virtual(scenario())


def test_a_large_compaction_deletes_its_rows_in_bounded_steps_the_same_on_two_stores(
    tmp_path: Path,
) -> None:
    stores = [KeyValueStore.open(tmp_path / f"s{n}.sqlite") for n in (1, 2)]
    appliers = [Applier(s) for s in stores]
    for a in appliers:
        assert a.raw(FormatUpgrade(HISTORY_FORMAT).encode()).ok
        for n in range(3 * PURGE_STEP_ROWS):
            a.put(f"k{n}", "v")
        assert compacted(a, 3 * PURGE_STEP_ROWS - 1).compacted
    for s in stores:
        assert s.history is not None and s.history.compact_revision == 3 * PURGE_STEP_ROWS - 1
        assert s.history.rows == 2 * PURGE_STEP_ROWS  # one step deleted with the entry
        assert [c.revision for c in s.history.changes(0, 10)] == [3 * PURGE_STEP_ROWS]
    for a in appliers:
        a.put("later", "1")
    assert [s.history.rows for s in stores if s.history] == [PURGE_STEP_ROWS + 1] * 2
    for a in appliers:
        a.put("later", "2")
        a.put("later", "3")
    for s in stores:
        assert s.history is not None and s.history.rows == 4
        s.commit()
        s.close()
    reopened = [KeyValueStore.open(tmp_path / f"s{n}.sqlite") for n in (1, 2)]
    windows = [s.history.changes(0, 100) for s in reopened if s.history]
    assert windows[0] == windows[1] and len(windows[0]) == 4
    for s in reopened:
        assert s.history is not None and s.history.rows == 4
        s.close()
