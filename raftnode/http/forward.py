"""Forwarding a write that reached a follower to the leader's client API, over kept-alive
connections.

The forwarded request carries ``X-Raftnode-Hops`` so a chain of stale leader views ends after
``MAX_HOPS``. Failures are typed by whether the request could have reached the leader:
``ForwardNotSent`` (no connection could be opened, or a kept-alive one was already closed before
anything was written: safe to send again) or ``ForwardUnknown`` (written, and no complete answer
came back: the outcome is unknown, 504 unless the write carries an idempotency key).

``LeaderConnections`` keeps a few idle HTTP/1.1 connections per leader address (a follower
forwards every write it receives, so opening a connection per write would cost a handshake
and a socket in TIME_WAIT each). Answers are parsed with httptools, as the server side is.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import httptools

HOPS_HEADER = "X-Raftnode-Hops"
MAX_HOPS = 2
IDEMPOTENCY_HEADER = "Idempotency-Key"
"""A client's key for one logical write: retries with the same key apply it at most once."""
REPLAYED_HEADER = "Idempotent-Replayed"
"""Set to ``true`` on the answer to a retry: the write had applied before, this is its outcome."""
_RELAYED_HEADERS = {
    name.lower(): name
    for name in (
        "Content-Type",
        "Retry-After",
        "X-Raftnode-Revision",
        "X-Raftnode-Node",
        REPLAYED_HEADER,
        "Allow",
    )
}
MAX_IDLE_PER_LEADER = 16
IDLE_SECONDS = 20.0
"""An idle connection older than this is closed rather than reused (well under the server's own
keep-alive timeout, so the server never closes one just as a request is written to it)."""
CONNECT_TIMEOUT = 1.0
MAX_ANSWER_BYTES = 64 << 20
"""A forwarded answer larger than this is refused (client API answers are small)."""


class ForwardNotSent(Exception):
    """The leader could not be reached: the request was not sent (safe to retry)."""


class ForwardUnknown(Exception):
    """The request may have reached the leader but no answer came back."""


@dataclass(frozen=True, slots=True)
class ForwardedResponse:
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass(slots=True)
class _Answer:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: list[bytes] = field(default_factory=list)
    size: int = 0
    keep_alive: bool = True


class _LeaderConnection(asyncio.Protocol):
    """One HTTP/1.1 connection to a leader: one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = time.monotonic()
        self._parser = httptools.HttpResponseParser(self)
        self._answer = _Answer()
        self._done: asyncio.Future[_Answer] | None = None
        self._last_header = b""

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transports are not asyncio.Transport subclasses, but are one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(ForwardUnknown(f"malformed answer from the leader: {e}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ForwardUnknown(f"the leader closed the connection ({exc or 'EOF'})"))

    # -- httptools callbacks ---------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        relayed = _RELAYED_HEADERS.get(key)
        if relayed is not None:
            self._answer.headers[relayed] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._answer.status = self._parser.get_status_code()
        self._answer.keep_alive = self._parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self._answer.size += len(body)
        if self._answer.size > MAX_ANSWER_BYTES:
            self._fail(ForwardUnknown(f"the leader's answer is over {MAX_ANSWER_BYTES} bytes"))
            return
        self._answer.body.append(body)

    def on_message_complete(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(self._answer)

    # -- use -------------------------------------------------------------------------------

    async def exchange(self, request: bytes, timeout: float) -> _Answer:
        """Write ``request`` and wait for its whole answer (``ForwardUnknown`` otherwise)."""
        assert self.transport is not None
        self._answer = _Answer()
        self._done = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            return await asyncio.wait_for(self._done, timeout)
        except TimeoutError:
            self.close()
            raise ForwardUnknown(f"no answer from the leader within {timeout:.1f}s") from None
        except BaseException:
            self.close()  # cancelled (the leader went quiet) or failed: never reuse it
            raise
        finally:
            self._done = None

    def _fail(self, exc: Exception) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class LeaderConnections:
    """Kept-alive connections to leaders, at most ``MAX_IDLE_PER_LEADER`` idle per address."""

    def __init__(self, ssl_context: Callable[[], ssl.SSLContext | None] = lambda: None) -> None:
        self._idle: dict[tuple[str, int], deque[_LeaderConnection]] = {}
        self._ssl_context = ssl_context
        """HTTPS to the leader (trusting the cluster CA) when the listeners speak it."""

    async def forward(
        self,
        host: str,
        port: int,
        method: str,
        target: str,
        body: bytes,
        hops: int,
        timeout: float,
        idempotency_key: str | None = None,
        authorization: str | None = None,
    ) -> ForwardedResponse:
        """Send one request to the leader at ``host:port`` and return its answer. The client's
        ``Authorization`` goes along: the leader authorizes the same principal."""
        headers = [
            f"{method} {target} HTTP/1.1",
            f"Host: {host}:{port}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            f"{HOPS_HEADER}: {hops + 1}",
        ]
        if idempotency_key is not None:
            headers.append(f"{IDEMPOTENCY_HEADER}: {idempotency_key}")
        if authorization is not None:
            headers.append(f"Authorization: {authorization}")
        request = ("\r\n".join(headers) + "\r\n\r\n").encode("latin-1") + body
        connection = await self._connection(host, port, timeout)
        answer = await connection.exchange(request, timeout)
        if answer.keep_alive and not connection.closed:
            self._release((host, port), connection)
        else:
            connection.close()
        return ForwardedResponse(answer.status, b"".join(answer.body), answer.headers)

    async def _connection(self, host: str, port: int, timeout: float) -> _LeaderConnection:
        idle = self._idle.get((host, port))
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < IDLE_SECONDS:
                return connection
            connection.close()
        loop = asyncio.get_running_loop()
        context = self._ssl_context()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    _LeaderConnection,
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context is not None else None,
                ),
                min(CONNECT_TIMEOUT, max(timeout, 0.001)),
            )
        except (OSError, TimeoutError) as e:
            raise ForwardNotSent(f"cannot connect to {host}:{port}: {e or 'timed out'}") from e
        return connection

    def _release(self, address: tuple[str, int], connection: _LeaderConnection) -> None:
        idle = self._idle.setdefault(address, deque())
        if len(idle) >= MAX_IDLE_PER_LEADER:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
