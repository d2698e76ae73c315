"""One thread that runs blocking jobs in order for the event loop: the Raft log's disk work.

Every node persists its log once per Ready, so this hand-off is on every write's path. On a
one-thread ``ThreadPoolExecutor``, ``loop.run_in_executor`` builds a ``concurrent.futures``
future, chains it to an asyncio one and takes the pool's locks and idle semaphore. A bare
queue and ``call_soon_threadsafe`` cost about two thirds of that CPU per job
(``python -m bench.disk_handoff``: 50-53 against 34-38 us on a busy run of this 2-core box,
31 against 20 us on a quiet one).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class WorkerClosedError(RuntimeError):
    """A job was handed to a worker after ``close``."""


class SerialWorker:
    """Runs the jobs given to ``run`` one after another in its own thread; each job's result
    (or exception) comes back to the awaiting coroutine on its event loop. A job whose
    waiter was cancelled still runs (a write must not stop half-way); its result is dropped."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        # A daemon: a process that exits without close() must not hang on this thread. What a
        # job wrote before such an exit is what a crash would leave, which the log recovers.
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue ``fn(*args)``; the future resolves on the running loop once it ran."""
        if self._closed:
            raise WorkerClosedError("the worker was closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, fn, args))
        return future

    def close(self) -> None:
        """Refuse new jobs; the thread ends after those already queued (not waited for)."""
        if not self._closed:
            self._closed = True
            self._jobs.put(None)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, future, fn, args = job
            try:
                result = fn(*args)
            except BaseException as e:  # as ThreadPoolExecutor: the waiter gets it
                _hand_back(loop, future, None, e)
            else:
                _hand_back(loop, future, result, None)


def _hand_back(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
