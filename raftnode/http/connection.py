"""HTTP/1.1 server connections on asyncio, parsed by ``httptools`` (the llhttp C parser).

The client API is the node's hot path: profiled at 64 connections, Tornado's per-request
``RequestHandler`` machinery took about half of the leader's only core, more than Raft itself.
This module keeps only what a JSON API needs: one ``asyncio.Protocol`` per connection, requests
parsed incrementally, each handed to an ``async`` handler, answers written in request order
(pipelined requests wait their turn), keep-alive as HTTP/1.1 says, and bounds on everything: the
body size (413 before the body is read), queued requests per connection (reading pauses), idle
connections (closed), and the handler's own deadline (the API's business).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qs, unquote_to_bytes

import httptools

log = logging.getLogger(__name__)

MAX_QUEUED_REQUESTS = 32
"""Requests parsed but not yet answered on one connection before reading pauses."""


@dataclass(slots=True)
class Request:
    method: str
    path: str
    """The URL path, percent-decoded."""
    raw_path: str
    """The path and query exactly as the client sent them (for forwarding)."""
    query: dict[str, list[str]]
    headers: dict[str, str]
    """Header names in lower case; a repeated header keeps its last value."""
    body: bytes
    remote: str
    started: float
    """Event-loop time when the request was complete."""

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    stream: StreamedBody | None = None
    """A large body sent in chunks with flow control instead of ``body`` (a snapshot)."""


@dataclass(slots=True)
class StreamedBody:
    """``length`` bytes, read chunk by chunk from ``source`` (bytes-like: bytes, an mmap)."""

    source: Any
    length: int
    chunk_bytes: int = 1 << 20


Handler = Callable[[Request], Awaitable[Response]]
ErrorResponder = Callable[[int, str, str], Response]
"""Builds an answer for a request the connection itself refuses: (status, code, message)."""
RequestLogger = Callable[[Request, Response], None]


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


class _DateCache:
    """The ``Date`` header, formatted at most once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def get(self, now: float) -> bytes:
        second = int(now)
        if second != self._second:
            self._second = second
            self._value = formatdate(now, usegmt=True).encode()
        return self._value


_dates = _DateCache()


def encode_response(response: Response, keep_alive: bool, wall_time: float) -> bytes:
    """The status line, headers and (unless streamed) the body."""
    length = response.stream.length if response.stream is not None else len(response.body)
    head = [
        b"HTTP/1.1 %d %s\r\n" % (response.status, _reason(response.status)),
        b"Date: %s\r\n" % _dates.get(wall_time),
        b"Content-Type: %s\r\n" % response.content_type.encode(),
        b"Content-Length: %d\r\n" % length,
    ]
    for name, value in response.headers.items():
        head.append(f"{name}: {value}\r\n".encode("latin-1", "replace"))
    if not keep_alive:
        head.append(b"Connection: close\r\n")
    head.append(b"\r\n")
    if response.stream is not None:
        return b"".join(head)
    return b"".join(head) + response.body


class HttpConnection(asyncio.Protocol):
    """One client connection: parse, queue, answer in order, keep alive or close."""

    def __init__(
        self,
        handler: Handler,
        refuse: ErrorResponder,
        *,
        max_body_bytes: int,
        idle_timeout: float,
        wall_clock: Callable[[], float],
        log_request: RequestLogger | None = None,
    ) -> None:
        self._handler = handler
        self._refuse = refuse
        self._max_body = max_body_bytes
        self._idle_timeout = idle_timeout
        self._wall_clock = wall_clock
        self._log_request = log_request
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._remote = ""
        self._queue: deque[tuple[Request, bool]] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._paused = False
        self._closing = False
        self._idle_timer: asyncio.TimerHandle | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()
        # The request being parsed.
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._too_large = False

    # -- asyncio.Protocol --------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """A request is being answered or waits its turn."""
        return self._worker is not None or bool(self._queue)

    def close(self) -> None:
        self._close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._remote = str(peer[0]) if peer else ""
        self._arm_idle_timer()

    def data_received(self, data: bytes) -> None:
        self._arm_idle_timer()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "bad_request", "protocol upgrades are not supported")
        except httptools.HttpParserError as e:
            self._fail(400, "bad_request", f"malformed HTTP request: {e}")

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._can_write.set()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self._worker is not None:
            self._worker.cancel()
        self._queue.clear()

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_size = 0
        self._too_large = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        length = self._headers.get("content-length", "")
        if length.isdigit() and int(length) > self._max_body:
            self._too_large = True

    def on_body(self, body: bytes) -> None:
        if self._too_large:
            return
        self._body_size += len(body)
        if self._body_size > self._max_body:
            self._too_large = True
            self._body = []
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._too_large:
            self._fail(413, "too_large", f"request body is larger than {self._max_body} bytes")
            return
        try:
            url = httptools.parse_url(self._url)
        except httptools.HttpParserInvalidURLError:
            self._fail(400, "bad_request", "malformed request URL")
            return
        raw_path = self._url.decode("latin-1")
        # Invalid UTF-8 stays visible as lone surrogates (surrogateescape): the handlers
        # refuse it with 400 instead of letting two different byte strings alias one key.
        query = url.query.decode("utf-8", "surrogateescape") if url.query else ""
        request = Request(
            method=self._parser.get_method().decode("latin-1"),
            path=_unquote_path(url.path),
            raw_path=raw_path,
            query=(
                parse_qs(query, keep_blank_values=True, errors="surrogateescape") if query else {}
            ),
            headers=self._headers,
            body=b"".join(self._body),
            remote=self._remote,
            started=self._loop.time(),
        )
        self._queue.append((request, self._parser.should_keep_alive()))
        if len(self._queue) >= MAX_QUEUED_REQUESTS and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        if self._worker is None:
            self._worker = self._loop.create_task(self._answer_in_order())

    # -- answering ---------------------------------------------------------------------------

    async def _answer_in_order(self) -> None:
        try:
            while self._queue and not self._closing:
                request, keep_alive = self._queue.popleft()
                try:
                    response = await self._handler(request)
                except Exception:
                    log.exception(
                        "request handler failed", extra={"fields": {"path": request.path}}
                    )
                    response = self._refuse(500, "internal", "the request failed unexpectedly")
                self._write(request, response, keep_alive)
                if response.stream is not None:
                    await self._send_stream(response.stream, keep_alive)
                if self._paused and len(self._queue) < MAX_QUEUED_REQUESTS // 2:
                    self._paused = False
                    if self._transport is not None and not self._closing:
                        self._transport.resume_reading()
        finally:
            self._worker = None

    def _write(self, request: Request | None, response: Response, keep_alive: bool) -> None:
        if self._log_request is not None and request is not None:
            self._log_request(request, response)
        if self._transport is None or self._closing:
            return
        self._transport.write(encode_response(response, keep_alive, self._wall_clock()))
        if not keep_alive and response.stream is None:
            self._close()  # a streamed body closes once it is sent

    async def _send_stream(self, body: StreamedBody, keep_alive: bool) -> None:
        """Write ``body`` chunk by chunk, waiting whenever the transport's buffer is full."""
        view = memoryview(body.source)
        for start in range(0, body.length, body.chunk_bytes):
            if self._transport is None or self._closing:
                return
            self._transport.write(bytes(view[start : start + body.chunk_bytes]))
            await self._can_write.wait()
        if not keep_alive:
            self._close()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def _fail(self, status: int, code: str, message: str) -> None:
        """Answer a request the connection cannot parse or accept, then close."""
        self._queue.clear()
        self._write(None, self._refuse(status, code, message), keep_alive=False)

    def _close(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    def _arm_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._idle_timer = self._loop.call_later(self._idle_timeout, self._on_idle)

    def _on_idle(self) -> None:
        if self._worker is None and not self._queue:
            self._close()
        else:
            self._arm_idle_timer()


def _unquote_path(path: bytes) -> str:
    """The percent-decoded path; bytes that are not UTF-8 become lone surrogates
    (``surrogateescape``), which key validation refuses."""
    if b"%" not in path:
        return path.decode("utf-8", "surrogateescape")
    return unquote_to_bytes(path).decode("utf-8", "surrogateescape")
