"""Keep-alives answered on the leader lease (``Lessor.keep_alive``), in virtual time: a leader
whose lease holds renews without a quorum round, however many keep-alives arrive at once; a
leader cut off from its followers renews nothing (its lease lapses, the round goes unanswered);
a renewal counts from when the request arrived and never shortens a later deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from raftnode.kv.lessor import Lessor
from raftnode.kv.service import KeyValueService
from raftnode.kv.store import KeyValueStore
from raftnode.node import NodeError
from raftnode.testing import make_cluster, run_virtual


def _store(tmp_path: Path) -> Callable[[int], KeyValueStore]:
    def store(node_id: int) -> KeyValueStore:
        return KeyValueStore.open(tmp_path / f"n{node_id}.sqlite")

    return store


def test_keep_alives_on_a_leader_holding_its_lease_need_no_quorum_round(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await make_cluster(3, _store(tmp_path), data_dir=tmp_path) as cluster:
            loop = asyncio.get_running_loop()
            leader = await cluster.wait_for_leader()
            lessor = Lessor(
                KeyValueService(leader, cluster.state_machines[leader.node_id], leader_wait=1.0)
            )
            deadline = time.monotonic() + 30.0
            granted = await lessor.grant(5, None, deadline)
            await asyncio.sleep(0.5)  # heartbeats acknowledged: the lease holds
            core = leader.core
            assert core is not None and core.lease_valid(loop.time())
            rounds, started = core._reads.round, loop.time()
            renewed = await asyncio.gather(
                *(lessor.keep_alive(granted.lease, deadline) for _ in range(50))
            )
            assert all(r.remaining == 5.0 for r in renewed)
            assert core._reads.round == rounds  # no heartbeat round was started for them
            assert loop.time() - started < 0.01  # answered without waiting for any peer
            await lessor.stop()

    run_virtual(scenario())


def test_a_leader_cut_off_from_its_followers_renews_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await make_cluster(3, _store(tmp_path), data_dir=tmp_path) as cluster:
            loop = asyncio.get_running_loop()
            leader = await cluster.wait_for_leader()
            lessor = Lessor(
                KeyValueService(leader, cluster.state_machines[leader.node_id], leader_wait=1.0)
            )
            granted = await lessor.grant(60, None, time.monotonic() + 30.0)
            cluster.isolate(leader.node_id)
            before = dict(lessor._deadlines)
            with pytest.raises(NodeError):
                # Within the lease the old leader may still answer (no other leader can exist
                # yet); keep asking until it lapses: from then on nothing is renewed.
                while True:
                    await lessor.keep_alive(granted.lease, time.monotonic() + 2.0)
                    before = dict(lessor._deadlines)
                    await asyncio.sleep(0.2)
                    assert loop.time() < 60.0, "the isolated leader kept renewing"
            assert lessor._deadlines.get(granted.lease, 0.0) <= before.get(granted.lease, 0.0)
            await lessor.stop()

    run_virtual(scenario())


def test_a_renewal_counts_from_arrival_and_never_shortens_a_later_deadline(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with await make_cluster(3, _store(tmp_path), data_dir=tmp_path) as cluster:
            loop = asyncio.get_running_loop()
            leader = await cluster.wait_for_leader()
            lessor = Lessor(
                KeyValueService(leader, cluster.state_machines[leader.node_id], leader_wait=1.0)
            )
            deadline = time.monotonic() + 30.0
            granted = await lessor.grant(10, None, deadline)
            lease = granted.lease
            asked = loop.time()
            await lessor.keep_alive(lease, deadline)
            assert lessor._deadlines[lease] == pytest.approx(asked + 10.0)
            later = asked + 100.0  # as set by a keep-alive that arrived after this one
            lessor._deadlines[lease] = later
            await lessor.keep_alive(lease, deadline)
            assert lessor._deadlines[lease] == later
            await lessor.stop()

    run_virtual(scenario())
