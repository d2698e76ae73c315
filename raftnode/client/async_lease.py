"""``AsyncLease``: ``Lease`` for asyncio (``AsyncClient.grant_lease``): the keep-alive is a
task on the client's event loop; ``lost`` is an ``asyncio.Event``. Same promises as
``raftnode.client.lease``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from raftnode.client.errors import ClientError, LeaseNotFound
from raftnode.client.lease import RenewalSchedule
from raftnode.client.lease_ops import LeaseStatus

if TYPE_CHECKING:
    from raftnode.client.async_client import AsyncClient


class AsyncLease:
    """A lease of ``ttl`` seconds with id ``id``, renewed by a task every ``ttl / 3``."""

    def __init__(
        self,
        client: AsyncClient,
        status: LeaseStatus,
        granted_at: float,
        *,
        keep_alive: bool = True,
        on_lost: Callable[[AsyncLease], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.id = status.id
        self.ttl = status.granted_ttl
        self._client = client
        self._clock = clock
        self._schedule = RenewalSchedule(float(status.granted_ttl), granted_at)
        self._on_lost = on_lost
        self._ended = asyncio.Event()
        self.lost = asyncio.Event()
        self.lost_reason: str | None = None
        self._task: asyncio.Task[None] | None = None
        if keep_alive:
            self._task = asyncio.get_running_loop().create_task(
                self._keep_alive_loop(), name=f"raftnode-lease-{self.id}"
            )

    @property
    def alive(self) -> bool:
        return not self._ended.is_set() and not self._schedule.expired(self._clock())

    def remaining(self) -> float:
        if self._ended.is_set():
            return 0.0
        return max(0.0, self._schedule.deadline - self._clock())

    async def keep_alive_once(self, *, timeout: float | None = None) -> LeaseStatus:
        sent = self._clock()
        try:
            status = await self._client.lease_keep_alive(self.id, timeout=timeout)
        except LeaseNotFound:
            self._lose("the cluster no longer holds the lease (expired or revoked)")
            raise
        self._schedule.renewed(sent)
        return status

    async def revoke(self, *, timeout: float | None = None) -> bool:
        """Stop the keep-alives and revoke the lease; False when it was already gone."""
        await self.close()
        return await self._client.revoke_lease(self.id, timeout=timeout)

    async def close(self) -> None:
        """Stop the keep-alives without revoking: the lease ends at its TTL."""
        self._ended.set()
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> AsyncLease:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(ClientError):  # else it ends at its TTL
            await self.revoke()

    def _lose(self, reason: str) -> None:
        if self._ended.is_set():
            return
        self.lost_reason = reason
        self._ended.set()
        self.lost.set()
        if self._on_lost is not None:
            self._on_lost(self)

    async def _keep_alive_loop(self) -> None:
        while not self._ended.is_set():
            wait = self._schedule.next_attempt() - self._clock()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ended.wait(), wait)
                if self._ended.is_set():
                    return
            sent = self._clock()
            budget = max(0.2, self._schedule.deadline - sent)
            try:
                await self._client.lease_keep_alive(self.id, timeout=budget)
            except LeaseNotFound:
                self._lose("the cluster no longer holds the lease (expired or revoked)")
                return
            except ClientError as e:
                now = self._clock()
                self._schedule.failed(now)
                if self._schedule.expired(now):
                    self._lose(f"no keep-alive was answered within the TTL ({self.ttl} s): {e}")
                    return
                continue
            self._schedule.renewed(sent)
