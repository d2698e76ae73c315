"""``AsyncClient``: the asyncio raftnode client (one per event loop; tasks may share it)."""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any

from raftnode.client import operations as ops
from raftnode.client.async_transport import AsyncHttpTransport, AsyncTransport
from raftnode.client.errors import ServerRefusal
from raftnode.client.operations import UNSET, KeyValue, Page, PrevValue, Unset, WriteResult
from raftnode.client.retry import CallAttempts, HttpAnswer, RetryPolicy, TransportError
from raftnode.client.settings import ClientSettings
from raftnode.consistency import Consistency


class AsyncClient:
    """The asyncio twin of ``Client``: the same options, methods, exceptions and retry rules
    (see ``Client`` and docs/client.md), awaited; ``range`` is an async iterator. Use one per
    event loop: its tasks share it and its kept-alive connections. ``transport``, ``clock``,
    ``sleep`` (awaited) and ``rng`` exist for tests.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str] | None = None,
        *,
        timeout: float | None = None,
        attempt_timeout: float | None = None,
        retry: RetryPolicy | None = None,
        token: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        transport: AsyncTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = ClientSettings.build(
            endpoints,
            timeout=timeout,
            attempt_timeout=attempt_timeout,
            retry=retry,
            token=token,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            ssl_context=ssl_context,
        )
        self._transport = transport or AsyncHttpTransport(self.settings.ssl_context)
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._preferred = 0

    @property
    def endpoints(self) -> list[str]:
        return [e.url for e in self.settings.endpoints]

    # -- reads -------------------------------------------------------------------------------

    async def get(
        self,
        key: str,
        *,
        consistency: Consistency | str = Consistency.LINEARIZABLE,
        timeout: float | None = None,
    ) -> KeyValue:
        """The key's value; raises ``NotFound`` when it does not exist."""
        answer = await self._call(ops.get_call(key, consistency), timeout)
        return ops.key_value(key, answer)

    async def page(
        self,
        prefix: str = "",
        *,
        start_after: str | None = None,
        limit: int | None = None,
        consistency: Consistency | str = Consistency.LINEARIZABLE,
        timeout: float | None = None,
    ) -> Page:
        """One page of keys under ``prefix`` after ``start_after``, in key order."""
        answer = await self._call(ops.page_call(prefix, limit, start_after, consistency), timeout)
        return ops.page(answer)

    async def range(
        self,
        prefix: str = "",
        *,
        start_after: str | None = None,
        page_size: int | None = None,
        consistency: Consistency | str = Consistency.LINEARIZABLE,
        timeout: float | None = None,
    ) -> AsyncIterator[KeyValue]:
        """Every key under ``prefix`` (after ``start_after``), page by page with the cursor.
        Each page is its own read (and ``timeout`` bounds each page): a key written while
        the listing runs may or may not appear, none appears twice."""
        cursor = start_after
        while True:
            page = await self.page(
                prefix,
                start_after=cursor,
                limit=page_size,
                consistency=consistency,
                timeout=timeout,
            )
            for item in page.items:
                yield item
            if not page.more or not page.items:
                return
            cursor = page.items[-1].key

    # -- writes ------------------------------------------------------------------------------

    async def put(
        self,
        key: str,
        value: str,
        *,
        prev_value: PrevValue = UNSET,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> WriteResult:
        """Write ``key``. With ``prev_value`` a compare-and-set: only if the key holds that
        value (None: only if absent); otherwise ``CompareFailed``, and nothing is written."""
        call = ops.put_call(key, value, prev_value, idempotency_key)
        return ops.write_result(call, key, await self._call(call, timeout))

    async def create(
        self,
        key: str,
        value: str,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> WriteResult:
        """Write ``key`` only if it does not exist (``CompareFailed`` otherwise)."""
        return await self.put(
            key, value, prev_value=None, idempotency_key=idempotency_key, timeout=timeout
        )

    async def compare_and_swap(
        self,
        key: str,
        expected: str | None,
        value: str,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> WriteResult:
        """Replace ``expected`` (None: the key is absent) by ``value``, atomically."""
        return await self.put(
            key, value, prev_value=expected, idempotency_key=idempotency_key, timeout=timeout
        )

    async def delete(
        self,
        key: str,
        *,
        prev_value: str | Unset = UNSET,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> WriteResult:
        """Delete ``key`` (only if it holds ``prev_value``, when given); ``NotFound`` when it
        does not exist."""
        call = ops.delete_call(key, prev_value, idempotency_key)
        return ops.write_result(call, key, await self._call(call, timeout))

    # -- cluster -----------------------------------------------------------------------------

    async def members(self, *, timeout: float | None = None) -> dict[str, Any]:
        """The members, the leader's id and term (``GET /admin/v1/members``; on a node's
        client port: the VIP closes the admin API)."""
        answer = await self._call(ops.Call("GET", "/admin/v1/members", None), timeout)
        return ops.answer_object(answer)

    # -- lifecycle ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the kept-alive connections."""
        await self._transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- the retry loop ----------------------------------------------------------------------

    async def _call(self, call: ops.Call, timeout: float | None) -> HttpAnswer:
        attempts = CallAttempts(
            self.settings.endpoints,
            self.settings.policy_for(timeout),
            self._clock(),
            self._preferred,
            call.idempotency_key,
            self._rng,
        )
        headers = self.settings.headers(call)
        while True:
            attempt_timeout = attempts.attempt_timeout(self._clock())
            endpoint = attempts.endpoint
            try:
                answer = await self._transport.request(
                    endpoint, call.method, call.path, call.body, headers, attempt_timeout
                )
            except TransportError as e:
                delay = attempts.failed(e, self._clock())
            else:
                try:
                    outcome = attempts.answered(answer, self._clock())
                except ServerRefusal:
                    self._preferred = attempts.index
                    raise
                if isinstance(outcome, HttpAnswer):
                    self._preferred = attempts.index
                    return outcome
                delay = outcome
            if delay > 0:
                await self._sleep(delay)
