"""``raftnode.testing.make_cluster``: a whole cluster on virtual time, as an embedding tests."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from raftnode.kv.commands import Command, CommandResult
from raftnode.kv.store import KeyValueStore
from raftnode.node import NotLeader, OutcomeUnknown
from raftnode.testing import Cluster, make_cluster, run_virtual


class Total:
    """A state machine: the sum of the committed ``by`` values."""

    def __init__(self) -> None:
        self.value = 0

    def apply(self, index: int, data: bytes) -> int:
        self.value += int(json.loads(data)["by"])
        return self.value

    def snapshot(self) -> bytes:
        return str(self.value).encode()

    def restore(self, data: bytes) -> None:
        self.value = int(data or b"0")


def by(n: int) -> bytes:
    return json.dumps({"by": n}).encode()


def on_cluster(
    scenario: Callable[[Cluster[Total]], Awaitable[None]], size: int = 3, **options: object
) -> None:
    async def main() -> None:
        async with await make_cluster(size, lambda node_id: Total(), **options) as cluster:  # type: ignore[arg-type]
            await scenario(cluster)

    run_virtual(main())


def test_one_leader_and_every_node_applies_in_order_without_waiting() -> None:
    async def scenario(cluster: Cluster[Total]) -> None:
        leader = await cluster.wait_for_leader()
        assert [await cluster.propose(by(n)) for n in (1, 2, 3)] == [1, 3, 6]
        for node in cluster.running():
            await node.read_barrier("linearizable", timeout=5.0)
            assert cluster.state_machines[node.node_id].value == 6
        assert sum(n.is_leader for n in cluster.running()) == 1 and leader.is_leader

    started = time.monotonic()
    on_cluster(scenario)
    assert time.monotonic() - started < 5.0  # elections and heartbeats in virtual time


def test_an_isolated_leader_is_replaced_and_catches_up_after_heal() -> None:
    async def scenario(cluster: Cluster[Total]) -> None:
        old = await cluster.wait_for_leader()
        await cluster.propose(by(1))
        cluster.isolate(old.node_id)
        new = await cluster.wait_for_leader(excluding=[old.node_id])
        assert new is not old
        with pytest.raises((NotLeader, OutcomeUnknown)):  # no majority behind the old leader
            await old.propose(by(100), timeout=1.0)
        assert await new.propose(by(10), timeout=5.0) == 11
        cluster.heal()
        await old.wait_for_leader(timeout=5.0)
        await old.read_barrier("linearizable", timeout=5.0)
        assert cluster.state_machines[old.node_id].value == 11  # its own entry was replaced

    on_cluster(scenario)


def test_a_minority_partition_cannot_commit_and_the_majority_can() -> None:
    async def scenario(cluster: Cluster[Total]) -> None:
        old = await cluster.wait_for_leader()
        minority = [old.node_id, next(i for i in cluster.members if i != old.node_id)]
        cluster.partition(minority, [i for i in cluster.members if i not in minority])
        new = await cluster.wait_for_leader(excluding=minority)
        with pytest.raises((NotLeader, OutcomeUnknown)):
            await old.propose(by(100), timeout=1.0)
        assert await new.propose(by(2), timeout=5.0) == 2
        cluster.heal()
        assert await cluster.propose(by(3)) == 5
        await cluster.wait_for_leader(everyone=True)
        for node in cluster.running():
            await node.read_barrier("linearizable", timeout=5.0)
            assert cluster.state_machines[node.node_id].value == 5

    on_cluster(scenario, size=5)


def test_a_crashed_node_restarts_from_what_it_persisted() -> None:
    async def scenario(cluster: Cluster[Total]) -> None:
        leader = await cluster.wait_for_leader()
        await cluster.propose(by(5))
        cluster.crash(leader.node_id)
        assert await cluster.propose(by(1)) == 6  # the other two elect a leader
        node = await cluster.restart(leader.node_id)
        assert cluster.state_machines[leader.node_id] is not None
        await node.wait_for_leader(timeout=5.0)
        await node.read_barrier("linearizable", timeout=5.0)
        assert cluster.state_machines[leader.node_id].value == 6

    on_cluster(scenario, snapshot_every_entries=2)


def test_same_seed_same_run() -> None:
    def leaders(seed: int) -> list[tuple[int, float]]:
        seen: list[tuple[int, float]] = []

        async def scenario(cluster: Cluster[Total]) -> None:
            for _ in range(3):
                leader = await cluster.wait_for_leader()
                seen.append((leader.node_id, cluster.loop.time()))
                cluster.crash(leader.node_id)
                await cluster.wait_for_leader()
                await cluster.restart(leader.node_id)

        on_cluster(scenario, seed=seed)
        return seen

    assert leaders(7) == leaders(7)


def test_a_durable_state_machine_keeps_its_files_under_data_dir(tmp_path: Path) -> None:
    async def main() -> None:
        def store(node_id: int) -> KeyValueStore:
            return KeyValueStore.open(tmp_path / f"kv{node_id}.sqlite")

        async with await make_cluster(3, store, data_dir=tmp_path / "nodes") as cluster:
            result = await cluster.propose(Command("put", "k", "v").encode())
            assert isinstance(result, CommandResult) and result.ok
            leader = await cluster.wait_for_leader()
            cluster.crash(leader.node_id)
            await cluster.propose(Command("put", "k", "w").encode())
            node = await cluster.restart(leader.node_id)
            await node.wait_for_leader(timeout=5.0)
            await node.read_barrier("linearizable", timeout=5.0)
            record = cluster.state_machines[leader.node_id].get("k")
            assert record is not None and record.value == "w"

    run_virtual(main())


def test_bad_requests_are_refused_with_the_reason(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="at least one node"):
            await make_cluster(0, lambda node_id: Total())
        with pytest.raises(ValueError, match="give make_cluster a data_dir"):
            await make_cluster(1, lambda node_id: KeyValueStore.open(tmp_path / f"{node_id}"))
        async with await make_cluster(3, lambda node_id: Total()) as cluster:
            with pytest.raises(ValueError, match="is running"):
                await cluster.restart(1)
            with pytest.raises(ValueError, match=r"nodes \[2\] are in two groups"):
                cluster.partition([1, 2], [2, 3])
            assert not cluster.network.cut
            cluster.crash(2)
            with pytest.raises(ValueError, match="crashed already"):
                cluster.crash(2)
            with pytest.raises(TimeoutError, match="n2:crashed"):
                cluster.isolate(1)
                cluster.isolate(3)
                await cluster.wait_for_leader(timeout=2.0)

    run_virtual(main())
