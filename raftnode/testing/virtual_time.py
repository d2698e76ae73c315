"""An asyncio event loop on virtual time, for tests: never use it in production.

It never sleeps, it jumps to the next timer. Everything a test runs on it (the real ``RaftNode``
ready loops, their tick timers, in-memory network deliveries and disk latencies, clients) is a
callback or task on this loop, so a run is a deterministic sequence of callbacks: same inputs,
same order, same outcome, and no wall-clock waiting. ``loop.time()`` is the virtual clock;
``asyncio.sleep`` and ``asyncio.wait_for`` use it like any other loop. Only in-memory work
belongs on it: real sockets would not wait for the clock.

``run_virtual(main())`` is ``asyncio.run`` on such a loop.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class Deadlock(RuntimeError):
    """Nothing is ready and no timer is pending: the simulated world would wait forever."""


class _JumpingSelector(selectors.DefaultSelector):
    """Polls without blocking; where the loop would block for ``timeout``, time jumps instead."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        events = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            raise Deadlock("no callback is ready and no timer is pending")
        self._loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """``asyncio.SelectorEventLoop`` whose clock only moves when nothing is ready to run."""

    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(selector=_JumpingSelector(self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += max(0.0, seconds)


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new ``VirtualTimeLoop``, then cancel what it left
    running and close the loop (``asyncio.run`` on virtual time)."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
