"""The counter example on a whole cluster in memory: ``raftnode.testing.make_cluster`` on virtual
time, so no ports, no polling and no waiting; the same seed replays the same run."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from counter_service import Counter, increment, read_value

from raftnode.embed import NotLeader
from raftnode.testing import Cluster, make_cluster, run_virtual


def on_counters(scenario: Callable[[Cluster[Counter]], Awaitable[None]]) -> None:
    async def main() -> None:
        async with await make_cluster(3, lambda node_id: Counter()) as cluster:
            await scenario(cluster)

    run_virtual(main())


def incr(by: int) -> bytes:
    return json.dumps({"by": by}).encode()


def test_counter_replicates_and_survives_leader_handover() -> None:
    changes: list[int] = []

    async def scenario(cluster: Cluster[Counter]) -> None:
        for node in cluster.nodes.values():
            node.add_leader_listener(lambda lead, term: changes.append(lead))
        leader = await cluster.wait_for_leader()
        assert leader.node_id in changes

        for by, total in ((1, 1), (2, 3), (3, 6)):
            assert await increment(leader, incr(by)) == (200, {"value": total})
        follower = next(n for n in cluster.running() if n is not leader)
        assert await increment(follower, b"{}") == (
            421,
            {"error": "not_leader", "leader": leader.node_id},
        )
        with pytest.raises(NotLeader):
            await follower.propose(incr(1), timeout=1.0)
        for node in cluster.running():
            assert await read_value(node, cluster.state_machines[node.node_id]) == (
                200,
                {"value": 6},
            )

        assert await leader.transfer_leadership(timeout=5.0)
        new = await cluster.wait_for_leader(excluding=[leader.node_id])
        assert await increment(new, incr(10)) == (200, {"value": 16})
        assert await read_value(leader, cluster.state_machines[leader.node_id]) == (
            200,
            {"value": 16},
        )

    on_counters(scenario)


def test_bad_increments_change_nothing() -> None:
    async def scenario(cluster: Cluster[Counter]) -> None:
        leader = await cluster.wait_for_leader()
        for body in (b"not json", b'{"by": "x"}', b"[1]"):
            status, answer = await increment(leader, body)
            assert status == 400 and answer["error"] == "bad_request"
        assert await increment(leader, b"") == (200, {"value": 1})  # "by" defaults to 1

    on_counters(scenario)


def test_a_cut_off_leader_cannot_answer_and_the_others_go_on() -> None:
    async def scenario(cluster: Cluster[Counter]) -> None:
        old = await cluster.wait_for_leader()
        await increment(old, incr(5))
        cluster.isolate(old.node_id)
        new = await cluster.wait_for_leader(excluding=[old.node_id])
        status, answer = await increment(old, incr(100))
        assert status in (421, 504), answer  # stepped down, or proposed with no majority
        assert (await read_value(old, cluster.state_machines[old.node_id]))[0] == 503
        assert await increment(new, incr(1)) == (200, {"value": 6})

        cluster.heal()
        await cluster.wait_for_leader(everyone=True)
        assert await read_value(old, cluster.state_machines[old.node_id]) == (200, {"value": 6})

    on_counters(scenario)


def test_a_crashed_node_comes_back_with_the_count() -> None:
    async def scenario(cluster: Cluster[Counter]) -> None:
        leader = await cluster.wait_for_leader()
        await increment(leader, incr(7))
        cluster.crash(leader.node_id)
        new = await cluster.wait_for_leader()
        assert await increment(new, incr(1)) == (200, {"value": 8})
        back = await cluster.restart(leader.node_id)
        await cluster.wait_for_leader(everyone=True)
        assert await read_value(back, cluster.state_machines[back.node_id]) == (200, {"value": 8})

    on_counters(scenario)
