"""Requests waiting on the Raft log: proposals until their entry applies, reads until the
local state machine is fresh enough. Every wait has a deadline; the runtime resolves them as
the core's ``Ready`` batches apply, and fails them all when the node stops."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raftnode.metrics import NodeMetrics
from raftnode.node_errors import NodeError, OutcomeUnknown, Unavailable
from raftnode.raft.types import ReadState


@dataclass(slots=True)
class _Proposal:
    term: int
    future: asyncio.Future[Any]
    deadline: float
    timeout: float


SWEEP_SECONDS = 0.05
"""How often proposals past their deadline are failed (so at most this late): one timer for
all of them, where a timer per proposal cost a start and a cancel per write."""


def _expire(fut: asyncio.Future[Any], error: Callable[[], NodeError]) -> None:
    """A request's deadline passed: fail its future unless it was answered meanwhile."""
    if not fut.done():
        fut.set_exception(error())


class PendingRequests:
    def __init__(self, metrics: NodeMetrics, first_read_id: int) -> None:
        self.metrics = metrics
        self._proposals: dict[int, _Proposal] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        metrics.proposals_pending.set_function(lambda: len(self._proposals))
        self._reads: dict[int, asyncio.Future[int]] = {}
        self._read_waiters: list[tuple[int, int, asyncio.Future[int]]] = []
        self._read_ids = itertools.count(first_read_id)

    # -- proposals -------------------------------------------------------------------------

    async def applied(self, index: int, term: int, timeout: float) -> Any:
        """The state machine's result for the entry proposed at ``index`` in ``term``."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        earlier = self._proposals.get(index)
        if earlier is not None and not earlier.future.done():
            # Its entry left this node's log (a newer leader's overwrote it); another leader
            # that still holds it may yet commit it.
            earlier.future.set_exception(
                OutcomeUnknown(f"entry {index} was replaced in this node's log before it applied")
            )
        self._proposals[index] = _Proposal(term, fut, loop.time() + timeout, timeout)
        if self._sweeper is None:
            self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep)
        try:
            return await fut
        finally:
            p = self._proposals.get(index)
            if p is not None and p.future is fut:
                del self._proposals[index]

    def _sweep(self) -> None:
        """Fail the proposals past their deadline; run again while any are left."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        expired = [i for i, p in self._proposals.items() if p.deadline <= now]
        for index in expired:
            p = self._proposals.pop(index)
            if not p.future.done():
                p.future.set_exception(
                    OutcomeUnknown(
                        f"entry {index} was proposed but not applied within {p.timeout:.1f}s"
                    )
                )
        self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep) if self._proposals else None

    def answer(self, index: int, term: int, result: Any) -> None:
        """Entry ``index`` of ``term`` applied with ``result``: answer its proposer, if any
        (an entry of another term at that index means the proposal was overwritten)."""
        p = self._proposals.pop(index, None)
        if p is None or p.future.done():
            return
        if p.term == term:
            p.future.set_result(result)
        else:
            p.future.set_exception(
                Unavailable("leadership changed before the write committed; nothing was written")
            )

    def replaced_up_to(self, index: int) -> None:
        """A snapshot replaced the state up to ``index``: the fate of writes there is unknown."""
        for i in [i for i in self._proposals if i <= index]:
            p = self._proposals.pop(i)
            if not p.future.done():
                p.future.set_exception(OutcomeUnknown("a snapshot replaced the pending write"))

    def fail_proposals(self, why: str) -> None:
        for p in self._proposals.values():
            if not p.future.done():
                p.future.set_exception(OutcomeUnknown(why))
        self._proposals.clear()

    # -- reads -----------------------------------------------------------------------------

    async def read(self, ask: Callable[[int], None], timeout: float) -> None:
        """Ask the core for a read index (``ask(request_id)``), then wait until it was
        confirmed and applied here, or ``timeout`` (``Unavailable``)."""
        rid = next(self._read_ids)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reads[rid] = fut
        ask(rid)
        timer = asyncio.get_running_loop().call_later(
            timeout,
            _expire,
            fut,
            lambda: Unavailable(f"no leader confirmed the read within {timeout:.1f}s"),
        )
        try:
            await fut
        finally:
            timer.cancel()
            self._reads.pop(rid, None)
            if fut.done() and not fut.cancelled():
                # Refused just as the wait timed out: the timeout is the answer, mark the
                # refusal seen.
                fut.exception()

    def read_states(self, states: list[ReadState], applied_index: int) -> None:
        """Reads the core confirmed (or refused) in one ``Ready``."""
        for rs in states:
            fut = self._reads.get(rs.request_id)
            if fut is None or fut.done():
                continue
            if rs.error is not None:
                fut.set_exception(Unavailable(f"read refused: {rs.error}"))
            elif rs.index <= applied_index:
                fut.set_result(rs.index)
            else:
                heapq.heappush(self._read_waiters, (rs.index, rs.request_id, fut))
        self.release_reads(applied_index)

    def release_reads(self, applied_index: int) -> None:
        """Answer the confirmed reads whose index has applied here."""
        while self._read_waiters and self._read_waiters[0][0] <= applied_index:
            index, _, fut = heapq.heappop(self._read_waiters)
            if not fut.done():
                fut.set_result(index)

    def fail_reads(self, exc: Exception) -> None:
        for fut in self._reads.values():
            if not fut.done():
                fut.set_exception(exc)
        self._reads.clear()
        self._read_waiters.clear()
