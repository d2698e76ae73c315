"""Proposals wait for their entry to apply, each until its own deadline, under one sweep timer."""

from __future__ import annotations

import asyncio

import pytest

from raftnode import pending
from raftnode.metrics import NodeMetrics
from raftnode.node_errors import OutcomeUnknown, Unavailable
from raftnode.pending import PendingRequests


def _pending_gauge(metrics: NodeMetrics) -> float:
    value = metrics.registry.get_sample_value("raftnode_proposals_pending")
    assert value is not None
    return value


def test_an_answered_proposal_gets_its_result_and_leaves_nothing_behind() -> None:
    async def scenario() -> None:
        metrics = NodeMetrics()
        reqs = PendingRequests(metrics, 0)
        waiting = asyncio.ensure_future(reqs.applied(7, 2, timeout=5.0))
        await asyncio.sleep(0)
        assert _pending_gauge(metrics) == 1
        reqs.answer(7, 2, "done")
        assert await waiting == "done"
        assert _pending_gauge(metrics) == 0
        await asyncio.sleep(2 * pending.SWEEP_SECONDS)
        assert reqs._sweeper is None  # nothing left to watch: no timer either

    asyncio.run(scenario())


def test_a_proposal_past_its_deadline_fails_naming_its_entry_others_keep_waiting() -> None:
    async def scenario() -> None:
        reqs = PendingRequests(NodeMetrics(), 0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        short = asyncio.ensure_future(reqs.applied(3, 1, timeout=0.1))
        long = asyncio.ensure_future(reqs.applied(4, 1, timeout=5.0))
        with pytest.raises(
            OutcomeUnknown, match=r"entry 3 was proposed but not applied within 0\.1s"
        ):
            await short
        waited = loop.time() - started
        assert 0.1 <= waited < 0.1 + 2 * pending.SWEEP_SECONDS + 0.1
        assert not long.done()
        reqs.answer(4, 1, "ok")
        assert await long == "ok"

    asyncio.run(scenario())


def test_an_entry_of_another_term_at_the_index_refuses_the_proposal() -> None:
    async def scenario() -> None:
        reqs = PendingRequests(NodeMetrics(), 0)
        old = asyncio.ensure_future(reqs.applied(5, 1, timeout=5.0))
        await asyncio.sleep(0)
        reqs.answer(5, 2, "someone else's")
        with pytest.raises(Unavailable, match="leadership changed"):
            await old

    asyncio.run(scenario())


def test_a_newer_proposal_at_the_same_index_ends_the_older_wait_and_keeps_its_own() -> None:
    async def scenario() -> None:
        metrics = NodeMetrics()
        reqs = PendingRequests(metrics, 0)
        first = asyncio.ensure_future(reqs.applied(9, 1, timeout=5.0))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(reqs.applied(9, 2, timeout=5.0))  # a new leader's entry
        with pytest.raises(OutcomeUnknown, match="entry 9 was replaced in this node's log"):
            await first  # at once, not after its 5 s
        assert _pending_gauge(metrics) == 1  # the older wait ending left the newer one
        reqs.answer(9, 2, "new")
        assert await second == "new"

    asyncio.run(scenario())
