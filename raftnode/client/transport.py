"""Blocking HTTP/1.1 with kept-alive connections per endpoint (``http.client``), for ``Client``.

``HttpTransport.request`` sends one request and returns its answer, or raises a
``TransportError`` that says whether the request may have reached the node (``sent``). It never
retries on another node (``Client`` decides that) but it does resend once, on a fresh
connection, a request whose kept-alive connection turns out to have been closed by the node
while idle (no answer byte came back). Thread-safe: each request takes its own connection.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections.abc import Mapping
from typing import Protocol

from raftnode.client.endpoints import Endpoint
from raftnode.client.retry import AttemptTimedOut, HttpAnswer, TransportError

MAX_IDLE_PER_ENDPOINT = 64
"""Idle connections kept per endpoint; more are closed once answered."""

_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
"""What a request on a connection the node closed while idle ends in."""


class Transport(Protocol):
    """What ``Client`` needs from a transport (the tests pass a fake one)."""

    def request(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: float,
    ) -> HttpAnswer: ...

    def close(self) -> None: ...


class HttpTransport:
    """``http.client`` connections, kept alive and reused per endpoint."""

    def __init__(
        self, ssl_context: ssl.SSLContext | None = None, max_idle: int = MAX_IDLE_PER_ENDPOINT
    ) -> None:
        self._ssl_context = ssl_context
        self._max_idle = max_idle
        self._idle: dict[Endpoint, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def request(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: float,
    ) -> HttpAnswer:
        conn = self._take_idle(endpoint)
        maybe_sent = False
        if conn is not None:
            try:
                return self._exchange(endpoint, conn, method, path, body, headers, timeout)
            except _StaleConnection:
                # Closed by the node while idle, most likely: once more on a new connection.
                # (Or the node died with the request: then it may have been received.)
                maybe_sent = True
        try:
            conn = self._connect(endpoint, timeout)
        except TransportError as e:
            raise TransportError(str(e), sent=maybe_sent) from e
        try:
            return self._exchange(endpoint, conn, method, path, body, headers, timeout)
        except _StaleConnection as e:
            raise TransportError(f"connection lost: {e.__cause__}", sent=True) from e

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [c for conns in self._idle.values() for c in conns]
            self._idle.clear()
        for conn in idle:
            conn.close()

    # -- internals ---------------------------------------------------------------------------

    def _take_idle(self, endpoint: Endpoint) -> http.client.HTTPConnection | None:
        with self._lock:
            conns = self._idle.get(endpoint)
            return conns.pop() if conns else None

    def _give_back(self, endpoint: Endpoint, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            conns = self._idle.setdefault(endpoint, [])
            if not self._closed and len(conns) < self._max_idle:
                conns.append(conn)
                return
        conn.close()

    def _connect(self, endpoint: Endpoint, timeout: float) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if endpoint.tls:
            context = self._ssl_context or ssl.create_default_context()
            conn = http.client.HTTPSConnection(
                endpoint.host, endpoint.port, timeout=timeout, context=context
            )
        else:
            conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
        try:
            conn.connect()
        except TimeoutError as e:
            conn.close()
            raise TransportError(f"connect timed out after {timeout:.2g} s", sent=False) from e
        except ssl.SSLError as e:
            conn.close()
            raise TransportError(f"TLS handshake failed: {e}", sent=False) from e
        except OSError as e:
            conn.close()
            raise TransportError(f"cannot connect: {e.strerror or e}", sent=False) from e
        if conn.sock is not None:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _exchange(
        self,
        endpoint: Endpoint,
        conn: http.client.HTTPConnection,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: float,
    ) -> HttpAnswer:
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        try:
            conn.request(method, path, body=body, headers=dict(headers))
            resp = conn.getresponse()
            data = resp.read()
        except _STALE as e:
            conn.close()
            raise _StaleConnection() from e
        except TimeoutError as e:
            conn.close()
            raise AttemptTimedOut(f"no answer within {timeout:.2g} s") from e
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise TransportError(f"connection failed: {e!r}", sent=True) from e
        answer = HttpAnswer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        if resp.will_close:
            conn.close()
        else:
            self._give_back(endpoint, conn)
        return answer


class _StaleConnection(Exception):
    """The node closed the connection before answering (idle close, or it went down)."""
