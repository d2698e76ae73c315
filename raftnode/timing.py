"""Event-loop helpers of the runtime: a fixed-rate ticker and a change notifier.

Both only use the running loop's clock (``loop.time()``: ``time.monotonic()`` on asyncio and
uvloop, virtual time in the simulation), so the simulation drives them like production.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable


class Ticker:
    """Calls ``on_tick`` every ``period`` seconds at a fixed rate; ticks missed while the loop
    was busy are skipped, not bunched."""

    def __init__(self, period: float, on_tick: Callable[[], None]) -> None:
        self.period = period
        self._on_tick = on_tick
        self._next_at = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._next_at = asyncio.get_running_loop().time()
        self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        self._next_at += self.period
        late = loop.time() - self._next_at
        if late > 0:
            self._next_at += math.ceil(late / self.period) * self.period
        self._timer = loop.call_at(self._next_at, self._fire)

    def _fire(self) -> None:
        self._schedule()
        self._on_tick()


class ChangeNotifier:
    """Lets coroutines wait, with a deadline, until something tells them a state changed."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []
        self.closed = False

    async def wait(self, deadline: float) -> bool:
        """True once ``notify`` was called; False when ``deadline`` (loop time) passes or the
        notifier was closed."""
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        if remaining <= 0 or self.closed:
            return False
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append(fut)
        try:
            await asyncio.wait_for(fut, remaining)
        except TimeoutError:
            return False
        return not self.closed

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def close(self) -> None:
        """Wake every waiter with False, and answer every later wait at once with False."""
        self.closed = True
        self.notify()
