"""``AsyncWatch``: the asyncio twin of ``raftnode.client.watch.Watch`` (an async iterator with
the same reconnection, resume, backoff and errors; ``await close()`` or ``async with``)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Protocol

from raftnode.client.async_transport import _parse_head, _read_head, _request_head
from raftnode.client.endpoints import Endpoint
from raftnode.client.errors import ServerError
from raftnode.client.retry import CallAttempts, HttpAnswer, TransportError
from raftnode.client.watch import MAX_ERROR_BODY, MAX_LINE_BYTES, REVISION_HEADER, WatchOptions
from raftnode.client.watch_events import (
    SseDecoder,
    StreamBroken,
    WatchEvent,
    WatchPosition,
    WatchTarget,
    compacted_from_answer,
)


class AsyncEventStream(Protocol):
    status: int
    headers: dict[str, str]

    async def readline(self) -> bytes: ...

    async def read_error_body(self) -> bytes: ...

    def close(self) -> None: ...


AsyncStreamOpener = Callable[
    [Endpoint, str, Mapping[str, str], float, float], Awaitable[AsyncEventStream]
]


class _AsyncHttpEventStream:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        status: int,
        headers: dict[str, str],
        idle_timeout: float,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.status = status
        self.headers = headers
        self._idle = idle_timeout
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self._buffer = b""

    async def readline(self) -> bytes:
        async with asyncio.timeout(self._idle):
            if not self._chunked:
                try:
                    return await self._reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as e:
                    return e.partial
            while b"\n" not in self._buffer:
                chunk = await self._chunk()
                if not chunk:
                    line, self._buffer = self._buffer, b""
                    return line
                self._buffer += chunk
                if len(self._buffer) > MAX_LINE_BYTES:
                    raise ValueError("an event line over the client's bound")
            line, _, self._buffer = self._buffer.partition(b"\n")
            return line + b"\n"

    async def _chunk(self) -> bytes:
        size_line = await self._reader.readline()
        if not size_line:
            return b""
        size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)
        if size == 0:
            return b""
        data = await self._reader.readexactly(size)
        await self._reader.readline()
        return data

    async def read_error_body(self) -> bytes:
        async with asyncio.timeout(self._idle):
            length = self.headers.get("content-length", "")
            if length.isdigit() and int(length) <= MAX_ERROR_BODY:
                return await self._reader.readexactly(int(length))
            return await self._reader.read(MAX_ERROR_BODY)

    def close(self) -> None:
        self._writer.close()


def async_http_stream_opener(ssl_context: ssl.SSLContext | None) -> AsyncStreamOpener:
    async def open_stream(
        endpoint: Endpoint,
        path: str,
        headers: Mapping[str, str],
        connect_timeout: float,
        idle_timeout: float,
    ) -> AsyncEventStream:
        context: ssl.SSLContext | None = None
        if endpoint.tls:
            context = ssl_context or ssl.create_default_context()
        try:
            async with asyncio.timeout(connect_timeout):
                reader, writer = await asyncio.open_connection(
                    endpoint.host,
                    endpoint.port,
                    ssl=context,
                    server_hostname=endpoint.host if context else None,
                    limit=MAX_LINE_BYTES,
                )
        except (OSError, TimeoutError) as e:
            raise TransportError(f"cannot connect: {e!r}", sent=False) from e
        try:
            async with asyncio.timeout(connect_timeout):
                head = {**headers, "Accept": "text/event-stream"}
                writer.write(_request_head(endpoint, "GET", path, None, head))
                await writer.drain()
                raw = await _read_head(reader)
                if not raw:
                    raise ValueError("the connection closed before an answer")
                _, status, answer_headers = _parse_head(raw)
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as e:
            writer.close()
            raise TransportError(f"no answer: {e!r}", sent=True) from e
        return _AsyncHttpEventStream(reader, writer, status, answer_headers, idle_timeout)

    return open_stream


class AsyncWatch:
    """An async iterator of ``WatchEvent`` in revision order, each change exactly once."""

    def __init__(
        self,
        endpoints: list[Endpoint],
        headers: Mapping[str, str],
        target: WatchTarget,
        start_revision: int | None,
        options: WatchOptions,
        opener: AsyncStreamOpener,
        *,
        first_endpoint: int = 0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.target = target
        self.position = WatchPosition(start_revision, options.progress)
        self._endpoints = endpoints
        self._headers = dict(headers)
        self._options = options
        self._open = opener
        self._next_endpoint = first_endpoint % len(endpoints)
        self._clock = clock
        self._rng = rng or random.Random()
        self._stopped = asyncio.Event()
        self._stream: AsyncEventStream | None = None
        self._decoder = SseDecoder()
        self._ready: deque[WatchEvent] = deque()
        self._attempts: CallAttempts | None = None
        self.reconnects = 0
        self.endpoint: Endpoint | None = None

    @property
    def revision(self) -> int | None:
        return self.position.last

    def __aiter__(self) -> AsyncWatch:
        return self

    async def __anext__(self) -> WatchEvent:
        while True:
            if self._stopped.is_set():
                self._drop()
                raise StopAsyncIteration
            if self._ready:
                return self._ready.popleft()
            stream = self._stream or await self._connect()
            if stream is None:
                continue
            try:
                line = await stream.readline()
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as e:
                if not self._stopped.is_set():
                    await self._broken(f"{self.endpoint}: stream failed: {e!r}")
                continue
            if not line:
                if not self._stopped.is_set():
                    await self._broken(f"{self.endpoint}: stream ended")
                continue
            try:
                message = self._decoder.line(line.decode("utf-8"))
                if message is not None:
                    self._ready.extend(self.position.message(message))
                    self._attempts = None
            except (StreamBroken, UnicodeDecodeError) as e:
                await self._broken(f"{self.endpoint}: {e}")

    async def start(self) -> AsyncWatch:
        """Open the first stream now (``async with`` does): a watch from the next revision
        then sees every change made after this returns."""
        if self._stream is None and not self._stopped.is_set():
            await self._connect()
        return self

    async def close(self) -> None:
        """End the watch: the iteration stops."""
        self._stopped.set()
        self._drop()

    async def __aenter__(self) -> AsyncWatch:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- internals ---------------------------------------------------------------------------

    def _drop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    async def _wait(self, delay: float) -> None:
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopped.wait()

    async def _broken(self, reason: str) -> None:
        self._drop()
        self.position.broken()
        self._decoder = SseDecoder()
        attempts = self._attempts_now()
        delay = attempts.failed(TransportError(reason, sent=False), self._clock())
        self._next_endpoint = attempts.index
        await self._wait(delay)

    def _attempts_now(self) -> CallAttempts:
        if self._attempts is None:
            self._attempts = CallAttempts(
                self._endpoints,
                self._options.policy,
                self._clock(),
                self._next_endpoint,
                None,
                self._rng,
            )
        return self._attempts

    async def _connect(self) -> AsyncEventStream | None:
        attempts = self._attempts_now()
        while not self._stopped.is_set():
            connect_timeout = attempts.attempt_timeout(self._clock())
            endpoint = attempts.endpoint
            start = self.position.next_start
            try:
                stream = await self._open(
                    endpoint,
                    self.target.path(start),
                    self._headers,
                    connect_timeout,
                    self._options.idle_timeout,
                )
            except TransportError as e:
                delay = attempts.failed(e, self._clock())
            else:
                if stream.status == 200:
                    self.position.opened(_int(stream.headers.get(REVISION_HEADER)))
                    self._decoder = SseDecoder()
                    if self.endpoint is not None:
                        self.reconnects += 1
                    self.endpoint = endpoint
                    self._next_endpoint = attempts.index
                    if self._stopped.is_set():
                        stream.close()
                        return None
                    self._stream = stream
                    return stream
                delay = await self._refused(attempts, stream, start)
            await self._wait(delay)
        return None

    async def _refused(
        self, attempts: CallAttempts, stream: AsyncEventStream, start: int | None
    ) -> float:
        try:
            body = await stream.read_error_body()
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
            body = b""
        finally:
            stream.close()
        answer = HttpAnswer(stream.status, stream.headers, body)
        if answer.status == 410:
            raise compacted_from_answer(CallAttempts.refusal(answer).body, start)
        if 200 <= answer.status < 300:
            raise ServerError(answer.status, "bad_answer", "the answer is not an event stream", {})
        outcome = attempts.answered(answer, self._clock())
        assert not isinstance(outcome, HttpAnswer)
        return outcome


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.strip().isdigit() else None
