"""An asyncio event loop on virtual time: it never sleeps, it jumps to the next timer.

Everything the simulation runs (the real ``RaftNode`` ready loops, their tick timers, simulated
network deliveries and disk latencies, clients) is a callback or task on this loop, so a run is
a deterministic sequence of callbacks: same seed, same order, same outcome. ``loop.time()`` is
the virtual clock; ``asyncio.sleep`` and ``asyncio.wait_for`` use it like any other loop.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any


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
