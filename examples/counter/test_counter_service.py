"""The counter example: three embedded nodes in one process, on one IOLoop."""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import tempfile
from pathlib import Path

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer

sys.path.insert(0, str(Path(__file__).parent))

from counter_service import Counter, make_app

from raftnode.devcluster import free_ports
from raftnode.embed import Address, NodeOptions, NotLeader, RaftNode


async def wait_leader(nodes: list[RaftNode], timeout: float = 10.0) -> RaftNode:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        leaders = [n for n in nodes if n.is_leader and n.has_quorum()]
        if len(leaders) == 1:
            return leaders[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no leader")


@pytest.mark.timeout(60)
def test_counter_replicates_and_survives_leader_handover() -> None:
    async def scenario(base: Path) -> None:
        ports = free_ports(6)
        members = {i: Address("127.0.0.1", ports[i - 1]) for i in (1, 2, 3)}
        counters = {i: Counter() for i in (1, 2, 3)}
        changes: list[tuple[int, int, int]] = []
        nodes: dict[int, RaftNode] = {}
        servers: list[HTTPServer] = []

        def record_change(node_id: int, lead: int, term: int) -> None:
            changes.append((node_id, lead, term))

        try:
            for i in (1, 2, 3):
                opts = NodeOptions(i, base / f"n{i}", members[i], members, b"k" * 32)
                nodes[i] = RaftNode(opts, counters[i])
                nodes[i].add_leader_listener(functools.partial(record_change, i))
                await nodes[i].start()
                server = HTTPServer(make_app(nodes[i], counters[i]))
                server.listen(ports[2 + i], "127.0.0.1")
                servers.append(server)
            leader = await wait_leader(list(nodes.values()))
            assert any(lead == leader.node_id for _, lead, _ in changes)

            client = AsyncHTTPClient()
            http = {i: f"http://127.0.0.1:{ports[2 + i]}" for i in (1, 2, 3)}
            for by in (1, 2, 3):
                r = await client.fetch(
                    http[leader.node_id] + "/incr", method="POST", body=json.dumps({"by": by})
                )
                assert json.loads(r.body)["value"] in (1, 3, 6)
            follower = next(n for n in nodes.values() if n is not leader)
            r = await client.fetch(
                http[follower.node_id] + "/incr", method="POST", body="{}", raise_error=False
            )
            assert r.code == 421 and json.loads(r.body)["leader"] == leader.node_id
            with pytest.raises(NotLeader):
                await follower.propose(b'{"by": 1}', timeout=1.0)
            for i in (1, 2, 3):
                r = await client.fetch(http[i] + "/value")
                assert json.loads(r.body) == {"value": 6}

            assert await leader.transfer_leadership(timeout=5.0)
            new = await wait_leader(list(nodes.values()))
            assert new is not leader
            assert await new.propose(b'{"by": 10}', timeout=5.0) == 16
            await leader.read_barrier("linearizable", timeout=5.0)
            assert counters[leader.node_id].value == 16
        finally:
            for s in servers:
                s.stop()
            for n in nodes.values():
                await n.stop()

    with tempfile.TemporaryDirectory() as d:
        asyncio.run(scenario(Path(d)))
