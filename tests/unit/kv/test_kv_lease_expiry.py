"""Lease expiry on an in-memory cluster (virtual time): the leader alone decides that a lease
expired and revokes it through the log, so every node deletes its keys at the same revision;
keep-alives hold it; a new leader gives every lease its full TTL again, so a failover never
expires a live lease early."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from raftnode.kv.commands import Command
from raftnode.kv.lessor import LeaseNotFound, Lessor
from raftnode.kv.service import KeyValueService
from raftnode.kv.store import KeyValueStore
from raftnode.testing import make_cluster, run_virtual
from raftnode.testing.cluster import Cluster

STEP = 0.05


def lessors(cluster: Cluster[KeyValueStore]) -> dict[int, Lessor]:
    out = {}
    for node_id, node in cluster.nodes.items():
        lessor = Lessor(KeyValueService(node, cluster.state_machines[node_id], leader_wait=1.0))
        lessor.start()
        out[node_id] = lessor
    return out


async def until(condition: object, timeout: float) -> float:
    """Loop time once ``condition()`` holds (bounded, in virtual time)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        if loop.time() > end:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(STEP)
    return loop.time()


def test_keep_alives_hold_a_lease_and_its_expiry_deletes_the_keys_through_the_log(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        def store(node_id: int) -> KeyValueStore:
            return KeyValueStore.open(tmp_path / f"n{node_id}.sqlite")

        async with await make_cluster(3, store, data_dir=tmp_path) as cluster:
            loop = asyncio.get_running_loop()
            leader = await cluster.wait_for_leader()
            by_node = lessors(cluster)
            lessor = by_node[leader.node_id]
            deadline = time.monotonic() + 30.0
            granted = await lessor.grant(2, None, deadline)
            assert granted.granted == 2 and granted.lease > 0
            put = await lessor.service.write(
                Command("put", "a", "1", lease=granted.lease), deadline
            )
            assert put.ok
            assert (await lessor.service.write(Command("put", "b", "2"), deadline)).ok
            for _ in range(10):  # 5 s of keep-alives: more than twice the TTL
                await asyncio.sleep(0.5)
                renewed = await lessor.keep_alive(granted.lease, deadline)
                assert renewed.remaining == 2.0
            stores = cluster.state_machines.values()
            assert all(s.get("a") is not None for s in stores)
            status = await lessor.time_to_live(granted.lease, deadline)
            assert 1.5 <= status.remaining <= 2.0
            stopped = loop.time()
            gone = await until(lambda: all(s.get("a") is None for s in stores), 10.0)
            assert 2.0 <= gone - stopped <= 2.0 + 1.0  # never before the TTL, soon after it
            assert all(s.get("b") is not None for s in stores)
            assert all(s.leases is not None and len(s.leases) == 0 for s in stores)
            assert len({s.revision for s in stores}) == 1  # the same deletes everywhere
            with pytest.raises(LeaseNotFound):
                await lessor.keep_alive(granted.lease, deadline)
            for each in by_node.values():
                await each.stop()

    run_virtual(scenario())


def test_a_new_leader_extends_every_lease_so_a_failover_never_expires_one_early(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        def store(node_id: int) -> KeyValueStore:
            return KeyValueStore.open(tmp_path / f"n{node_id}.sqlite")

        async with await make_cluster(3, store, data_dir=tmp_path) as cluster:
            loop = asyncio.get_running_loop()
            old = await cluster.wait_for_leader()
            by_node = lessors(cluster)
            deadline = time.monotonic() + 30.0
            granted = await by_node[old.node_id].grant(3, 42, deadline)
            assert granted.lease == 42
            service = by_node[old.node_id].service
            assert (await service.write(Command("put", "held", "v", lease=42), deadline)).ok
            t0 = loop.time()
            await asyncio.sleep(2.0)  # no keep-alive: 1 s of TTL left on the old leader
            await by_node.pop(old.node_id).stop()
            cluster.crash(old.node_id)
            new = await cluster.wait_for_leader(excluding=[old.node_id])
            elected = loop.time()
            kept = cluster.state_machines[new.node_id]
            # The old leader's deadline (t0 + 3) passes: the new one gave the lease 3 s afresh.
            while loop.time() < elected + 2.8:
                assert kept.get("held") is not None, loop.time() - elected
                await asyncio.sleep(STEP)
            gone = await until(lambda: kept.get("held") is None, 5.0)
            assert gone - t0 >= 3.0 and gone - elected <= 3.0 + 1.0
            for each in by_node.values():
                await each.stop()

    run_virtual(scenario())
