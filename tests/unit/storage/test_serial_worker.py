"""SerialWorker: the log's disk thread. Jobs run in order, off the event loop; results and
exceptions come back to the waiter; a cancelled waiter does not stop its job; close ends it."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from raftnode.storage.serial_worker import SerialWorker, WorkerClosedError


def test_jobs_run_in_order_in_one_other_thread_and_answer_their_waiters() -> None:
    async def scenario() -> tuple[list[int], set[int], list[int]]:
        worker = SerialWorker("test-disk")
        ran: list[int] = []
        threads: set[int] = set()

        def job(i: int) -> int:
            time.sleep(0.001 * (5 - i))  # later jobs are quicker: order must still hold
            ran.append(i)
            threads.add(threading.get_ident())
            return i * 10

        try:
            results = await asyncio.gather(*(worker.run(job, i) for i in range(5)))
        finally:
            worker.close()
        return ran, threads, list(results)

    ran, threads, results = asyncio.run(scenario())
    assert ran == [0, 1, 2, 3, 4]
    assert results == [0, 10, 20, 30, 40]
    assert len(threads) == 1 and threading.get_ident() not in threads


def test_an_exception_reaches_the_waiter_and_the_next_job_still_runs() -> None:
    async def scenario() -> int:
        worker = SerialWorker("test-disk")
        try:

            def fail() -> None:
                raise OSError(5, "Input/output error")

            with pytest.raises(OSError, match="Input/output error"):
                await worker.run(fail)
            return await worker.run(lambda: 7)
        finally:
            worker.close()

    assert asyncio.run(scenario()) == 7


def test_a_cancelled_waiter_does_not_stop_its_job() -> None:
    async def scenario() -> list[str]:
        worker = SerialWorker("test-disk")
        done: list[str] = []
        started = threading.Event()

        def write() -> None:
            started.set()
            time.sleep(0.05)
            done.append("written")

        try:
            waiter = worker.run(write)
            await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
            waiter.cancel()
            await worker.run(lambda: None)  # queued behind the write: it finished
        finally:
            worker.close()
        return done

    assert asyncio.run(scenario()) == ["written"]


def test_close_refuses_new_jobs_and_ends_the_thread_after_the_queued_ones() -> None:
    async def scenario() -> tuple[SerialWorker, list[int]]:
        worker = SerialWorker("test-disk")
        ran: list[int] = []
        last = worker.run(ran.append, 1)
        worker.close()
        worker.close()  # twice is fine
        with pytest.raises(WorkerClosedError):
            worker.run(ran.append, 2)
        await last
        return worker, ran

    worker, ran = asyncio.run(scenario())
    assert ran == [1]
    deadline = time.monotonic() + 5
    while worker.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not worker.alive
