"""``Watch``: a blocking iterator over a watch's events that survives dead nodes.

Opened by ``Client.watch``. It reads one ``GET /watch`` stream at a time; when the stream
breaks (the node died, was paused past ``idle_timeout``, cancelled the watch, or the answer
was malformed) it reconnects to the next endpoint from the revision after the last one it
delivered (``WatchPosition``), with the client's bounded, jittered backoff between rounds of
failed endpoints. It raises ``Unavailable`` when no node took the watch for ``timeout``
seconds in a row, ``WatchCompacted`` when the changes it needs are gone, and the node's
refusal for a bad request. ``close()`` (from any thread) or the ``with`` block ends it.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from raftnode.client.endpoints import Endpoint
from raftnode.client.errors import ServerError
from raftnode.client.retry import CallAttempts, HttpAnswer, RetryPolicy, TransportError
from raftnode.client.watch_events import (
    SseDecoder,
    StreamBroken,
    WatchEvent,
    WatchPosition,
    WatchTarget,
    compacted_from_answer,
)

MAX_LINE_BYTES = 16 * 1024 * 1024
"""One SSE line (a change event carries a whole value)."""
MAX_ERROR_BODY = 64 * 1024
REVISION_HEADER = "x-raftnode-revision"


class EventStream(Protocol):
    """One open ``GET /watch`` answer (tests pass fakes)."""

    status: int
    headers: dict[str, str]

    def readline(self) -> bytes: ...

    def read_error_body(self) -> bytes: ...

    def interrupt(self) -> None:
        """Wake a ``readline`` blocked in another thread (it then returns or raises)."""

    def close(self) -> None: ...


StreamOpener = Callable[[Endpoint, str, Mapping[str, str], float, float], EventStream]
"""(endpoint, path, headers, connect timeout, idle timeout) -> an open answer, or raises
``TransportError``."""


@dataclass(frozen=True, slots=True)
class WatchOptions:
    """``timeout``: reconnection gives up after this long without a node taking the watch;
    ``idle_timeout``: a stream silent this long (no change, no progress event) is taken for
    dead; ``progress``: yield progress events too."""

    policy: RetryPolicy
    idle_timeout: float = 30.0
    progress: bool = False

    def __post_init__(self) -> None:
        if not self.idle_timeout > 0:
            raise ValueError(f"idle_timeout must be positive, not {self.idle_timeout}")


class _HttpEventStream:
    def __init__(
        self,
        sock: socket.socket,
        conn: http.client.HTTPConnection,
        resp: http.client.HTTPResponse,
    ) -> None:
        self._sock = sock
        self._conn = conn
        self._resp = resp
        self.status = resp.status
        self.headers = {k.lower(): v for k, v in resp.getheaders()}

    def readline(self) -> bytes:
        return self._resp.readline(MAX_LINE_BYTES)

    def read_error_body(self) -> bytes:
        return self._resp.read(MAX_ERROR_BODY)

    def interrupt(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.interrupt()
        self._resp.close()
        self._conn.close()
        self._sock.close()


def http_stream_opener(ssl_context: ssl.SSLContext | None) -> StreamOpener:
    def open_stream(
        endpoint: Endpoint,
        path: str,
        headers: Mapping[str, str],
        connect_timeout: float,
        idle_timeout: float,
    ) -> EventStream:
        conn: http.client.HTTPConnection
        if endpoint.tls:
            context = ssl_context or ssl.create_default_context()
            conn = http.client.HTTPSConnection(
                endpoint.host, endpoint.port, timeout=connect_timeout, context=context
            )
        else:
            conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=connect_timeout)
        try:
            conn.connect()
        except OSError as e:  # refused, timed out, TLS
            conn.close()
            raise TransportError(f"cannot connect: {e}", sent=False) from e
        sock = conn.sock
        assert sock is not None
        try:
            conn.request("GET", path, headers={**headers, "Accept": "text/event-stream"})
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise TransportError(f"no answer: {e!r}", sent=True) from e
        sock.settimeout(idle_timeout)
        return _HttpEventStream(sock, conn, resp)

    return open_stream


class Watch:
    """An iterator of ``WatchEvent`` in revision order, each change exactly once."""

    def __init__(
        self,
        endpoints: list[Endpoint],
        headers: Mapping[str, str],
        target: WatchTarget,
        start_revision: int | None,
        options: WatchOptions,
        opener: StreamOpener,
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
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._stream: EventStream | None = None
        self._reading = False
        self._decoder = SseDecoder()
        self._ready: deque[WatchEvent] = deque()
        self._attempts: CallAttempts | None = None
        self.reconnects = 0
        """Streams opened after the first (for tests and metrics)."""
        self.endpoint: Endpoint | None = None
        """Where the current stream is open."""

    @property
    def revision(self) -> int | None:
        """The last revision wholly delivered (or seen in a progress event)."""
        return self.position.last

    def __iter__(self) -> Watch:
        return self

    def __next__(self) -> WatchEvent:
        while True:
            if self._stopped.is_set():
                self._drop()
                raise StopIteration
            if self._ready:
                return self._ready.popleft()
            stream = self._stream or self._connect()
            if stream is None:
                continue  # closed while connecting
            with self._lock:
                self._reading = True
            try:
                line = stream.readline()
            except (OSError, http.client.HTTPException, ValueError) as e:
                if not self._stopped.is_set():
                    self._broken(f"{self.endpoint}: stream failed: {e!r}")
                continue
            finally:
                with self._lock:
                    self._reading = False
            if not line:
                if not self._stopped.is_set():
                    self._broken(f"{self.endpoint}: stream ended")
                continue
            try:
                message = self._decoder.line(line.decode("utf-8"))
                if message is not None:
                    self._ready.extend(self.position.message(message))
                    self._attempts = None  # the stream works: a later break starts afresh
            except (StreamBroken, UnicodeDecodeError) as e:
                self._broken(f"{self.endpoint}: {e}")

    def start(self) -> Watch:
        """Open the first stream now (``Client.watch`` does): a watch from the next revision
        then sees every change made after this returns."""
        if self._stream is None and not self._stopped.is_set():
            self._connect()
        return self

    def close(self) -> None:
        """End the watch (safe from another thread): the iteration stops."""
        self._stopped.set()
        with self._lock:
            if self._reading:
                # Another thread is inside readline: wake it; it closes the stream itself.
                if self._stream is not None:
                    self._stream.interrupt()
                return
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _drop(self) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def _broken(self, reason: str) -> None:
        self._drop()
        self.position.broken()
        self._decoder = SseDecoder()
        attempts = self._attempts_now()
        delay = attempts.failed(TransportError(reason, sent=False), self._clock())
        self._next_endpoint = attempts.index
        if delay > 0:
            self._stopped.wait(delay)

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

    def _connect(self) -> EventStream | None:
        attempts = self._attempts_now()
        while not self._stopped.is_set():
            connect_timeout = attempts.attempt_timeout(self._clock())
            endpoint = attempts.endpoint
            start = self.position.next_start
            try:
                stream = self._open(
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
                    with self._lock:
                        if self._stopped.is_set():
                            stream.close()
                            return None
                        self._stream = stream
                    return stream
                delay = self._refused(attempts, stream, start)
            if delay > 0:
                self._stopped.wait(delay)
        return None

    def _refused(self, attempts: CallAttempts, stream: EventStream, start: int | None) -> float:
        """The delay before the next attempt after a non-200 answer, or raise."""
        try:
            body = stream.read_error_body()
        except (OSError, http.client.HTTPException):
            body = b""
        finally:
            stream.close()
        answer = HttpAnswer(stream.status, stream.headers, body)
        if answer.status == 410:
            raise compacted_from_answer(CallAttempts.refusal(answer).body, start)
        if 200 <= answer.status < 300:
            raise ServerError(answer.status, "bad_answer", "the answer is not an event stream", {})
        outcome = attempts.answered(answer, self._clock())
        assert not isinstance(outcome, HttpAnswer)  # a 2xx other than 200 is not a stream
        return outcome


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.strip().isdigit() else None
