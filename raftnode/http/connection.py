"""HTTP/1.1 server connections on asyncio, parsed by ``httptools`` (the llhttp C parser).

The client API is the node's hot path: profiled at 64 connections, Tornado's per-request
``RequestHandler`` machinery took about half of the leader's only core, more than Raft itself.
This module keeps only what a JSON API needs: one ``asyncio.Protocol`` per connection, requests
parsed incrementally, each handed to an ``async`` handler, answers written in request order
(pipelined requests wait their turn), keep-alive as HTTP/1.1 says, and a bound on everything a
client can make the node hold (``ConnectionLimits``, from ``limits:`` in the YAML):

- the request line, the header block and the header count (431), the body (413);
- the time from a request's first byte to the end of its headers, and of its body (408): a
  client trickling bytes cannot hold a connection past them;
- the keep-alive idle time, which only a completed request restarts;
- open connections, in all and per source address (``ConnectionGate``; 503 + Retry-After);
- requests and bytes read ahead of their answers (pipelining: reading pauses; what one read
  already holds is still parsed, so the bound holds to within one read of at most 256 KiB),
  and unsent answer bytes (reading pauses over a high-water mark; a client that reads nothing
  for the idle time is disconnected).

A request the connection refuses (malformed, too large, too slow) is queued behind the requests
already read, as aiohttp's ``web_protocol`` does: their answers go out first, then the refusal,
then the connection closes. Every close the server starts is a lingering close (nginx's
``lingering_close``): the answer is sent, the sending side shut down, and whatever the client
still sends is read and dropped for a bounded time, so the kernel does not reset the connection
and destroy the answer before the client reads it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from enum import Enum
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qs, unquote_to_bytes

import httptools

from raftnode.defaults import Limits
from raftnode.http.connection_gate import ConnectionGate, Refusal
from raftnode.tls import certificate_names

log = logging.getLogger(__name__)

_REQUEST_LINE = re.compile(rb"(?m)^[A-Z][A-Z0-9_-]{0,31} [^ \r\n]+ HTTP/1\.[01]\r?$")
"""A request line (method, target, version), to tell an unknown method from garbage."""

LINGER_SECONDS = 2.0
"""After the server's last answer on a connection, how long it reads and drops what the client
still sends before closing outright."""


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
    tls_names: tuple[str, ...] = ()
    """A verified client certificate's subject CN and DNS/URI SANs (HTTPS only)."""

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    stream: StreamedBody | StreamedEvents | None = None
    """A large body sent in chunks with flow control instead of ``body`` (a snapshot), or an
    open-ended one (a watch's events)."""


@dataclass(slots=True)
class StreamedBody:
    """``length`` bytes, read chunk by chunk from ``source`` (bytes-like: bytes, an mmap)."""

    source: Any
    length: int
    chunk_bytes: int = 1 << 20
    send_seconds: float | None = None
    """The whole body must be sent within this long, or the connection is closed (a client
    that reads too slowly cannot hold what the body holds, e.g. a snapshot, for ever)."""
    on_done: Callable[[], None] | None = None
    """Called once the body was sent, or sending it ended early (always called once)."""


@dataclass(slots=True)
class StreamedEvents:
    """An open-ended body (Server-Sent Events): the chunks of ``chunks`` until it ends, with
    no ``Content-Length``; the connection closes after it. A client that stops reading is
    disconnected after ``idle_timeout`` of a full send buffer; a client that goes away ends
    the iteration (the iterator is closed, so its ``finally`` runs)."""

    chunks: AsyncIterator[bytes]


Handler = Callable[[Request], Awaitable[Response]]
ErrorResponder = Callable[[int, str, str], Response]
"""Builds an answer for a request the connection itself refuses: (status, code, message)."""
RequestLogger = Callable[[Request, Response], None]
RefusalCounter = Callable[[Refusal], None]


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one connection may make the node hold; see ``raftnode.defaults.Limits``."""

    max_body_bytes: int
    max_request_line_bytes: int
    max_header_bytes: int
    max_header_count: int
    header_timeout: float
    body_timeout: float
    idle_timeout: float
    max_pipelined_requests: int
    max_pipelined_bytes: int
    write_buffer_high_bytes: int

    @classmethod
    def from_config(cls, limits: Limits, max_body_bytes: int) -> ConnectionLimits:
        return cls(
            max_body_bytes=max_body_bytes,
            max_request_line_bytes=limits.max_request_line_bytes,
            max_header_bytes=limits.max_header_bytes,
            max_header_count=limits.max_header_count,
            header_timeout=limits.header_timeout_seconds,
            body_timeout=limits.body_timeout_seconds,
            idle_timeout=limits.idle_timeout_seconds,
            max_pipelined_requests=limits.max_pipelined_requests,
            max_pipelined_bytes=limits.max_pipelined_bytes,
            write_buffer_high_bytes=limits.write_buffer_high_bytes,
        )


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
    head = [
        b"HTTP/1.1 %d %s\r\n" % (response.status, _reason(response.status)),
        b"Date: %s\r\n" % _dates.get(wall_time),
        b"Content-Type: %s\r\n" % response.content_type.encode(),
    ]
    if isinstance(response.stream, StreamedBody):
        head.append(b"Content-Length: %d\r\n" % response.stream.length)
    elif response.stream is None:
        head.append(b"Content-Length: %d\r\n" % len(response.body))
    else:
        keep_alive = False  # the body ends when the connection closes
    for name, value in response.headers.items():
        head.append(f"{name}: {value}\r\n".encode("latin-1", "replace"))
    if not keep_alive:
        head.append(b"Connection: close\r\n")
    head.append(b"\r\n")
    if response.stream is not None:
        return b"".join(head)
    return b"".join(head) + response.body


class _Phase(Enum):
    IDLE = "idle"
    """Between requests (or before the first)."""
    HEAD = "head"
    BODY = "body"


class _Refused(Exception):
    """Raised inside a parser callback: the request is refused with this answer."""

    def __init__(self, status: int, code: str, message: str, reason: Refusal) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.reason = reason


@dataclass(slots=True)
class _Queued:
    """A request read and waiting for its answer, or (``request`` None) the refusal that ends
    the connection after every answer before it."""

    request: Request | None
    keep_alive: bool
    size: int
    refusal: Response | None = None


class HttpConnection(asyncio.Protocol):
    """One client connection: parse, queue, answer in order, keep alive or close."""

    def __init__(
        self,
        handler: Handler,
        refuse: ErrorResponder,
        limits: ConnectionLimits,
        *,
        wall_clock: Callable[[], float],
        log_request: RequestLogger | None = None,
        gate: ConnectionGate | None = None,
        count_refusal: RefusalCounter | None = None,
        on_answered: Callable[[], None] | None = None,
    ) -> None:
        self._handler = handler
        self._refuse = refuse
        self._limits = limits
        self._wall_clock = wall_clock
        self._log_request = log_request
        self._gate = gate
        self._count_refusal = count_refusal
        self._on_answered = on_answered
        """Called each time the connection has answered everything it had (no longer busy)."""
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._remote = ""
        self._tls_names: tuple[str, ...] = ()
        self._admitted = False
        self._queue: deque[_Queued] = deque()
        self._queued_bytes = 0
        self._worker: asyncio.Task[None] | None = None
        self._reading_paused = False
        self._write_paused = False
        self._rejecting = False
        """A refusal is queued: nothing more is read or parsed."""
        self._closing = False
        self._lingering = False
        self._peer_closed = False
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._idle_since = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._read_timer: asyncio.TimerHandle | None = None
        self._read_timer_for: tuple[int, _Phase] | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        # The request being parsed.
        self._phase = _Phase.IDLE
        self._messages_begun = 0
        self._message_started = 0.0
        self._body_started = 0.0
        self._line_bytes = 0
        self._header_bytes = 0
        self._header_count = 0
        self._head_chunk_bytes = 0
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_size = 0

    # -- asyncio.Protocol --------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """A request is being answered or waits its turn."""
        return self._worker is not None or bool(self._queue)

    @property
    def reading_paused(self) -> bool:
        """Reading is paused: too much read ahead of its answers, or answers not sent."""
        return self._reading_paused

    def close(self) -> None:
        """Close now (shutdown): answers not yet written are dropped."""
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        high = self._limits.write_buffer_high_bytes
        self._transport.set_write_buffer_limits(high=high, low=high // 4)
        peer = transport.get_extra_info("peername")
        self._remote = str(peer[0]) if peer else ""
        self._tls_names = certificate_names(transport.get_extra_info("peercert"))
        if self._gate is not None:
            refused = self._gate.admit(self._remote)
            if refused is not None:
                self._refuse_connection(refused)
                return
            self._admitted = True
        self._become_idle()

    def data_received(self, data: bytes) -> None:
        if self._closing or self._rejecting:
            return  # lingering, or a refusal is queued: drop what the client still sends
        begun = self._messages_begun
        head_before = self._phase is _Phase.HEAD
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as e:
            cause = e.__context__
            if isinstance(cause, _Refused):
                self._reject(cause.status, cause.code, cause.message, cause.reason)
            else:
                log.error("HTTP parser callback failed", exc_info=cause)
                self._reject(500, "internal", "the request failed unexpectedly", Refusal.MALFORMED)
            return
        except httptools.HttpParserUpgrade:
            self._reject(
                400, "bad_request", "protocol upgrades are not supported", Refusal.MALFORMED
            )
            return
        except httptools.HttpParserInvalidMethodError:
            if _REQUEST_LINE.search(data):  # a well-formed request with a method we do not know
                self._reject(
                    501,
                    "not_implemented",
                    "unknown HTTP method; this API implements GET, POST, PUT and DELETE",
                    Refusal.MALFORMED,
                )
            else:
                self._reject(400, "bad_request", "malformed HTTP request line", Refusal.MALFORMED)
            return
        except httptools.HttpParserError as e:
            self._reject(400, "bad_request", f"malformed HTTP request: {e}", Refusal.MALFORMED)
            return
        if self._phase is _Phase.HEAD and head_before and begun == self._messages_begun:
            # The whole chunk belongs to a header block that is still open: httptools buffers
            # an unfinished header line, so count it here, before any callback sees it.
            self._head_chunk_bytes += len(data)
            if self._head_chunk_bytes > self._limits.max_header_bytes:
                self._reject(*self._headers_too_large())
                return
        if self._phase is not _Phase.IDLE:
            self._arm_read_deadline()

    def eof_received(self) -> bool:
        """The client shut down its sending side: answer what it sent, then close."""
        self._peer_closed = True
        if self._lingering:
            return False  # close
        return self.busy

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._can_write.set()
        if self._admitted and self._gate is not None:
            self._admitted = False
            self._gate.release(self._remote)
        for timer in (self._idle_timer, self._read_timer, self._write_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        if self._worker is not None:
            self._worker.cancel()
        self._queue.clear()
        self._queued_bytes = 0

    def pause_writing(self) -> None:
        """The transport holds more unsent bytes than ``write_buffer_high_bytes``."""
        self._can_write.clear()
        self._write_paused = True
        self._update_reading()
        if self._write_timer is None:
            self._write_timer = self._loop.call_later(
                self._limits.idle_timeout, self._on_write_stalled
            )

    def resume_writing(self) -> None:
        self._can_write.set()
        self._write_paused = False
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        self._update_reading()

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._phase = _Phase.HEAD
        self._messages_begun += 1
        self._message_started = self._loop.time()
        self._line_bytes = 0
        self._header_bytes = 0
        self._header_count = 0
        self._head_chunk_bytes = 0
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._line_bytes += len(url)
        if self._line_bytes > self._limits.max_request_line_bytes:
            raise _Refused(
                431,
                "headers_too_large",
                f"the request target is longer than {self._limits.max_request_line_bytes} "
                "bytes (limits.max_request_line_bytes)",
                Refusal.HEADERS_TOO_LARGE,
            )
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._header_count > self._limits.max_header_count:
            raise _Refused(
                431,
                "headers_too_large",
                f"the request has more than {self._limits.max_header_count} header fields "
                "(limits.max_header_count)",
                Refusal.HEADERS_TOO_LARGE,
            )
        if self._line_bytes + self._header_bytes > self._limits.max_header_bytes:
            raise _Refused(*self._headers_too_large())
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._phase = _Phase.BODY
        self._body_started = self._loop.time()
        length = self._headers.get("content-length", "")
        if length.isdigit() and int(length) > self._limits.max_body_bytes:
            raise self._body_too_large()

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._limits.max_body_bytes:
            raise self._body_too_large()
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._phase = _Phase.IDLE
        self._cancel_read_deadline()
        try:
            url = httptools.parse_url(self._url)
        except httptools.HttpParserInvalidURLError:
            raise _Refused(400, "bad_request", "malformed request URL", Refusal.MALFORMED) from None
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
            tls_names=self._tls_names,
        )
        size = self._line_bytes + self._header_bytes + self._body_size
        self._queue.append(_Queued(request, self._parser.should_keep_alive(), size))
        self._queued_bytes += size
        self._update_reading()
        self._start_worker()

    def _headers_too_large(self) -> tuple[int, str, str, Refusal]:
        return (
            431,
            "headers_too_large",
            f"the request line and headers are larger than {self._limits.max_header_bytes} "
            "bytes (limits.max_header_bytes)",
            Refusal.HEADERS_TOO_LARGE,
        )

    def _body_too_large(self) -> _Refused:
        return _Refused(
            413,
            "too_large",
            f"request body is larger than {self._limits.max_body_bytes} bytes",
            Refusal.BODY_TOO_LARGE,
        )

    # -- answering ---------------------------------------------------------------------------

    def _start_worker(self) -> None:
        if self._worker is None:
            self._worker = self._loop.create_task(self._answer_in_order())

    async def _answer_in_order(self) -> None:
        try:
            while self._queue and not self._closing:
                if not self._can_write.is_set():
                    await self._can_write.wait()  # bounded: a stalled writer is aborted
                    continue
                item = self._queue.popleft()
                self._queued_bytes -= item.size
                if item.request is None:
                    assert item.refusal is not None
                    self._write(None, item.refusal, keep_alive=False)
                    return
                try:
                    response = await self._handler(item.request)
                except Exception:
                    log.exception(
                        "request handler failed", extra={"fields": {"path": item.request.path}}
                    )
                    response = self._refuse(500, "internal", "the request failed unexpectedly")
                self._write(item.request, response, item.keep_alive)
                if isinstance(response.stream, StreamedEvents):
                    await self._send_events(response.stream)
                    return
                if response.stream is not None:
                    await self._send_stream(response.stream, item.keep_alive)
                self._update_reading()
        finally:
            self._worker = None
            self._become_idle()
            if self._on_answered is not None and not self.busy:
                self._on_answered()

    def _write(self, request: Request | None, response: Response, keep_alive: bool) -> None:
        if self._log_request is not None and request is not None:
            self._log_request(request, response)
        if self._transport is None or self._closing:
            return
        self._transport.write(encode_response(response, keep_alive, self._wall_clock()))
        if not keep_alive and response.stream is None:
            self._close_lingering()  # a streamed body closes once it is sent

    async def _send_stream(self, body: StreamedBody, keep_alive: bool) -> None:
        """Write ``body`` chunk by chunk, waiting whenever the transport's buffer is full, and
        close the connection if ``body.send_seconds`` pass first."""
        deadline = None
        if body.send_seconds is not None:
            deadline = self._loop.time() + body.send_seconds
        try:
            view = memoryview(body.source)
            for start in range(0, body.length, body.chunk_bytes):
                if self._transport is None or self._closing:
                    return
                self._transport.write(bytes(view[start : start + body.chunk_bytes]))
                remaining = None if deadline is None else deadline - self._loop.time()
                try:
                    await asyncio.wait_for(self._can_write.wait(), remaining)
                except TimeoutError:
                    log.warning(
                        "streamed answer not read in time; closing the connection",
                        extra={"fields": {"sent": start, "length": body.length}},
                    )
                    self._closing = True
                    if self._transport is not None:
                        self._transport.abort()
                    return
            if not keep_alive:
                self._close_lingering()
        finally:
            if body.on_done is not None:
                body.on_done()

    async def _send_events(self, body: StreamedEvents) -> None:
        """Write each chunk as it comes, waiting while the transport's buffer is full (a
        stalled client is aborted by the write timer), then close."""
        chunks = body.chunks
        try:
            async for chunk in chunks:
                if self._transport is None or self._closing:
                    return
                self._transport.write(chunk)
                if not self._can_write.is_set():
                    await self._can_write.wait()  # bounded: the write timer aborts a stall
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
            self._close_lingering()

    # -- refusing ----------------------------------------------------------------------------

    def _reject(self, status: int, code: str, message: str, reason: Refusal) -> None:
        """Refuse the request being read: after the answers already owed, answer ``status``
        and close. Nothing more is read."""
        if self._rejecting or self._closing:
            return
        self._rejecting = True
        self._cancel_read_deadline()
        if self._count_refusal is not None:
            self._count_refusal(reason)
        self._queue.append(_Queued(None, False, 0, self._refuse(status, code, message)))
        self._update_reading()
        self._start_worker()

    def _refuse_connection(self, reason: Refusal) -> None:
        """Answer 503 at once to a connection over a cap, and close it."""
        self._rejecting = True
        if self._count_refusal is not None:
            self._count_refusal(reason)
        setting = f"limits.{reason.value}"
        response = self._refuse(
            503,
            "too_many_connections",
            f"too many open connections ({setting}); retry shortly or reuse a connection",
        )
        response.headers["Retry-After"] = "1"
        self._write(None, response, keep_alive=False)

    def _close_lingering(self) -> None:
        """Send what is buffered, shut down the sending side, drop what the client still sends
        for up to ``LINGER_SECONDS``, then close."""
        if self._closing:
            return
        self._closing = True
        self._cancel_read_deadline()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._peer_closed or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._lingering = True
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        self._linger_timer = self._loop.call_later(LINGER_SECONDS, transport.abort)

    # -- flow control and timers -------------------------------------------------------------

    def _reading_wanted(self) -> bool:
        if self._rejecting or self._write_paused:
            return False
        requests, size = len(self._queue), self._queued_bytes
        limit_requests, limit_bytes = (
            self._limits.max_pipelined_requests,
            self._limits.max_pipelined_bytes,
        )
        if self._reading_paused:  # resume only once half of the backlog is answered
            return requests <= limit_requests // 2 and size <= limit_bytes // 2
        return requests < limit_requests and size < limit_bytes

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or self._closing or transport.is_closing():
            return
        wanted = self._reading_wanted()
        if wanted and self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        elif not wanted and not self._reading_paused:
            self._reading_paused = True
            transport.pause_reading()

    def _become_idle(self) -> None:
        """Start the keep-alive clock if nothing is being read, queued or answered."""
        if self._closing or self._phase is not _Phase.IDLE or self.busy:
            return
        if self._peer_closed:
            self._close_lingering()
            return
        self._idle_since = self._loop.time()
        if self._idle_timer is None:
            self._idle_timer = self._loop.call_at(
                self._idle_since + self._limits.idle_timeout, self._on_idle
            )

    def _on_idle(self) -> None:
        # One timer per idle period, moved on lazily: a busy connection never re-arms it.
        self._idle_timer = None
        if self._closing or self._phase is not _Phase.IDLE or self.busy:
            return  # a request began; the next idle period starts a new timer
        due = self._idle_since + self._limits.idle_timeout
        if self._loop.time() >= due - 0.001:
            self.close()
        else:
            self._idle_timer = self._loop.call_at(due, self._on_idle)

    def _arm_read_deadline(self) -> None:
        """The header or body deadline of the request being read, armed only when a read ends
        with the request unfinished (a request that arrives whole never arms one)."""
        key = (self._messages_begun, self._phase)
        if self._read_timer is not None and self._read_timer_for == key:
            return
        self._cancel_read_deadline()
        if self._phase is _Phase.HEAD:
            due = self._message_started + self._limits.header_timeout
        else:
            due = self._body_started + self._limits.body_timeout
        self._read_timer = self._loop.call_at(due, self._on_read_deadline)
        self._read_timer_for = key

    def _cancel_read_deadline(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
            self._read_timer_for = None

    def _on_read_deadline(self) -> None:
        self._read_timer = None
        self._read_timer_for = None
        if self._closing or self._rejecting or self._phase is _Phase.IDLE:
            return
        if self._reading_paused:
            # The server stopped reading (backpressure), not the client: wait for it again.
            self._read_timer = self._loop.call_later(
                self._limits.header_timeout, self._on_read_deadline
            )
            self._read_timer_for = (self._messages_begun, self._phase)
            return
        if self._phase is _Phase.HEAD:
            seconds, setting, reason = (
                self._limits.header_timeout,
                "limits.header_timeout_ms",
                Refusal.HEADER_TIMEOUT,
            )
            what = "headers"
        else:
            seconds, setting, reason = (
                self._limits.body_timeout,
                "limits.body_timeout_ms",
                Refusal.BODY_TIMEOUT,
            )
            what = "body"
        self._reject(
            408,
            "request_timeout",
            f"the request {what} did not arrive within {seconds:g} s ({setting})",
            reason,
        )

    def _on_write_stalled(self) -> None:
        """The client has read none of its answers for the idle time: drop it."""
        self._write_timer = None
        if self._transport is not None:
            log.debug("client stopped reading", extra={"fields": {"remote": self._remote}})
            self._transport.abort()


def _unquote_path(path: bytes) -> str:
    """The percent-decoded path; bytes that are not UTF-8 become lone surrogates
    (``surrogateescape``), which key validation refuses."""
    if b"%" not in path:
        return path.decode("utf-8", "surrogateescape")
    return unquote_to_bytes(path).decode("utf-8", "surrogateescape")
