"""``AsyncLock`` and ``AsyncElection``: ``Lock`` and ``Election`` for asyncio, on an
``AsyncClient``. Same keys, same ordering, same fencing revisions (see
``raftnode.client.concurrency``): sync and async contenders may share one lock."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from types import TracebackType

from raftnode.client.async_client import AsyncClient
from raftnode.client.async_lease import AsyncLease
from raftnode.client.concurrency import (
    DEFAULT_TTL,
    AcquireTimeout,
    LeaderInfo,
    LockLost,
    contender_key,
    first_contender,
    key_prefix,
    predecessor,
)
from raftnode.client.errors import ClientError
from raftnode.client.txn import Compare
from raftnode.client.watch_events import WatchCompacted


class _AsyncContender:
    def __init__(self, client: AsyncClient, name: str, ttl: int) -> None:
        self.client = client
        self.prefix = key_prefix(name)
        self.ttl = ttl
        self.lease: AsyncLease | None = None
        self.key: str | None = None
        self.revision: int | None = None
        self.first = False

    async def enter(self, value: str, timeout: float | None) -> int:
        if self.lease is not None:
            raise RuntimeError(f"already holding or waiting under {self.prefix!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        self.lease = await self.client.grant_lease(self.ttl)
        try:
            self.key = contender_key(self.prefix, self.lease.id)
            written = await self.client.put(self.key, value, prev_value=None, lease=self.lease.id)
            self.revision = written.revision
            await self._wait_first(deadline)
        except BaseException:
            await self.leave()
            raise
        self.first = True
        return self.revision

    async def leave(self) -> None:
        lease, self.lease = self.lease, None
        self.first = False
        self.revision = None
        if lease is not None:
            with contextlib.suppress(ClientError):  # else the key goes at the TTL
                await lease.revoke()

    @property
    def holding(self) -> bool:
        return self.first and self.lease is not None and self.lease.alive

    def _check_alive(self) -> AsyncLease:
        lease = self.lease
        if lease is None or lease.lost.is_set():
            reason = lease.lost_reason if lease is not None else "released"
            raise LockLost(f"{self.key}: the lease is gone ({reason})")
        return lease

    async def _wait_first(self, deadline: float | None) -> None:
        assert self.revision is not None and self.key is not None
        while True:
            lease = self._check_alive()
            page = await self.client.page(self.prefix, limit=1000)
            if not any(kv.key == self.key for kv in page.items):
                raise LockLost(f"{self.key} was deleted: the lease ended")
            before = predecessor(page.items, self.revision)
            if before is None:
                return
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise AcquireTimeout(
                    f"{self.prefix}: not first within the timeout ({before.key} is ahead)"
                )
            deleted = asyncio.ensure_future(self._deleted(before.key, page.revision + 1))
            lost = asyncio.ensure_future(lease.lost.wait())
            try:
                await asyncio.wait(
                    {deleted, lost}, timeout=remaining, return_when="FIRST_COMPLETED"
                )
            finally:
                for task in (deleted, lost):
                    task.cancel()
                await asyncio.gather(deleted, lost, return_exceptions=True)

    async def _deleted(self, key: str, start: int) -> None:
        try:
            async with self.client.watch(key, start_revision=start, progress=True) as watch:
                async for event in watch:
                    if event.type == "delete" and event.key == key:
                        return
        except WatchCompacted:
            return  # list again


class AsyncLock:
    """``Lock`` for asyncio: ``await acquire(timeout)`` (the fencing revision), ``await
    release()``, ``async with``."""

    def __init__(
        self,
        client: AsyncClient,
        name: str,
        *,
        ttl: int = DEFAULT_TTL,
        timeout: float | None = None,
    ) -> None:
        self._contender = _AsyncContender(client, name, ttl)
        self.timeout = timeout
        self.fencing_revision: int | None = None

    @property
    def key(self) -> str | None:
        return self._contender.key

    @property
    def lease(self) -> AsyncLease | None:
        return self._contender.lease

    @property
    def held(self) -> bool:
        return self._contender.holding

    async def acquire(self, timeout: float | None = None) -> int:
        self.fencing_revision = await self._contender.enter("", timeout)
        return self.fencing_revision

    async def release(self) -> None:
        await self._contender.leave()
        self.fencing_revision = None

    def guard(self) -> Compare:
        if self.key is None or self.fencing_revision is None:
            raise LockLost("the lock is not held")
        return Compare.create_revision(self.key, "==", self.fencing_revision)

    async def __aenter__(self) -> AsyncLock:
        await self.acquire(self.timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()


class AsyncElection:
    """``Election`` for asyncio."""

    def __init__(self, client: AsyncClient, name: str, *, ttl: int = DEFAULT_TTL) -> None:
        self.client = client
        self._contender = _AsyncContender(client, name, ttl)
        self.prefix = self._contender.prefix
        self.fencing_revision: int | None = None

    @property
    def lease(self) -> AsyncLease | None:
        return self._contender.lease

    @property
    def is_leader(self) -> bool:
        return self._contender.holding

    async def campaign(self, value: str, timeout: float | None = None) -> int:
        self.fencing_revision = await self._contender.enter(value, timeout)
        return self.fencing_revision

    async def resign(self) -> None:
        await self._contender.leave()
        self.fencing_revision = None

    def guard(self) -> Compare:
        key = self._contender.key
        if key is None or self.fencing_revision is None:
            raise LockLost("not the leader")
        return Compare.create_revision(key, "==", self.fencing_revision)

    async def leader(self) -> LeaderInfo | None:
        return first_contender((await self.client.page(self.prefix, limit=1000)).items)

    async def observe(self) -> AsyncIterator[LeaderInfo | None]:
        """The leader now, then each change of leader (or of its value); bound it with
        ``asyncio.timeout`` or break out."""
        page = await self.client.page(self.prefix, limit=1000)
        shown = first_contender(page.items)
        yield shown
        async with self.client.watch(prefix=self.prefix, start_revision=page.revision + 1) as w:
            async for _event in w:
                now = first_contender((await self.client.page(self.prefix, limit=1000)).items)
                if now != shown:
                    shown = now
                    yield now
