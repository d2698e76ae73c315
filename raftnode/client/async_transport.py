"""HTTP/1.1 on asyncio streams with kept-alive connections per endpoint, for ``AsyncClient``.

The asyncio twin of ``raftnode.client.transport``: same contract (an answer, or a
``TransportError`` saying whether the request may have reached the node), same single resend
on a fresh connection when a kept-alive one was closed by the node while idle. Answers are read
by ``Content-Length``, chunked transfer coding, or until the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from typing import Protocol

from raftnode.client.endpoints import Endpoint
from raftnode.client.retry import AttemptTimedOut, HttpAnswer, TransportError

MAX_IDLE_PER_ENDPOINT = 64
MAX_ANSWER_BYTES = 64 * 1024 * 1024
"""A bound on one answer's body (a listing page is at most a few MiB)."""
MAX_HEADER_LINES = 100

_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class AsyncTransport(Protocol):
    """What ``AsyncClient`` needs from a transport (the tests pass a fake one)."""

    async def request(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: float,
    ) -> HttpAnswer: ...

    async def close(self) -> None: ...


class _StaleConnection(Exception):
    """The node closed the connection before any byte of an answer."""


class AsyncHttpTransport:
    """Connections opened with ``asyncio.open_connection``, kept alive and reused."""

    def __init__(
        self, ssl_context: ssl.SSLContext | None = None, max_idle: int = MAX_IDLE_PER_ENDPOINT
    ) -> None:
        self._ssl_context = ssl_context
        self._max_idle = max_idle
        self._idle: dict[Endpoint, list[_Connection]] = {}
        self._closed = False

    async def request(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: float,
    ) -> HttpAnswer:
        head = _request_head(endpoint, method, path, body, headers)
        maybe_sent = False
        conn = self._take_idle(endpoint)
        if conn is not None:
            try:
                return await self._exchange(endpoint, conn, head, body, timeout)
            except _StaleConnection:
                maybe_sent = True  # see raftnode.client.transport
        try:
            conn = await self._connect(endpoint, timeout)
        except TransportError as e:
            raise TransportError(str(e), sent=maybe_sent) from e
        try:
            return await self._exchange(endpoint, conn, head, body, timeout)
        except _StaleConnection as e:
            raise TransportError(f"connection lost: {e.__cause__!r}", sent=True) from e

    async def close(self) -> None:
        self._closed = True
        idle = [c for conns in self._idle.values() for c in conns]
        self._idle.clear()
        for _, writer in idle:
            writer.close()
        for _, writer in idle:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    # -- internals ---------------------------------------------------------------------------

    def _take_idle(self, endpoint: Endpoint) -> _Connection | None:
        conns = self._idle.get(endpoint)
        while conns:
            reader, writer = conns.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return None

    def _give_back(self, endpoint: Endpoint, conn: _Connection) -> None:
        conns = self._idle.setdefault(endpoint, [])
        if not self._closed and len(conns) < self._max_idle:
            conns.append(conn)
        else:
            conn[1].close()

    async def _connect(self, endpoint: Endpoint, timeout: float) -> _Connection:
        context: ssl.SSLContext | None = None
        if endpoint.tls:
            context = self._ssl_context or ssl.create_default_context()
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.open_connection(
                    endpoint.host,
                    endpoint.port,
                    ssl=context,
                    server_hostname=endpoint.host if context else None,
                )
        except TimeoutError as e:
            raise TransportError(f"connect timed out after {timeout:.2g} s", sent=False) from e
        except ssl.SSLError as e:
            raise TransportError(f"TLS handshake failed: {e}", sent=False) from e
        except OSError as e:
            raise TransportError(f"cannot connect: {e.strerror or e}", sent=False) from e

    async def _exchange(
        self, endpoint: Endpoint, conn: _Connection, head: bytes, body: bytes | None, timeout: float
    ) -> HttpAnswer:
        reader, writer = conn
        answered = False
        try:
            async with asyncio.timeout(timeout):
                writer.write(head + body if body else head)
                await writer.drain()
                head = await _read_head(reader)
                if not head:
                    raise _StaleConnection()
                answered = True
                answer, keep_alive = await _read_answer(head, reader)
        except (_StaleConnection, asyncio.CancelledError):
            writer.close()  # a cancelled exchange leaves the connection mid-answer: never reused
            raise
        except TimeoutError as e:
            writer.close()
            raise AttemptTimedOut(f"no answer within {timeout:.2g} s") from e
        except (ConnectionResetError, BrokenPipeError) as e:
            writer.close()
            if not answered:
                raise _StaleConnection() from e
            raise TransportError(f"connection lost: {e!r}", sent=True) from e
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
            writer.close()
            raise TransportError(f"connection failed: {e!r}", sent=True) from e
        if keep_alive:
            self._give_back(endpoint, conn)
        else:
            writer.close()
        return answer


def _request_head(
    endpoint: Endpoint, method: str, path: str, body: bytes | None, headers: Mapping[str, str]
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {endpoint.host_header}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body or b'')}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    """The status line and headers, in one read up to the blank line (the stream's limit,
    64 KiB, bounds them); empty when the connection closed before any byte."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return b""
        raise ValueError("connection closed inside the answer's headers") from e


async def _read_answer(head: bytes, reader: asyncio.StreamReader) -> tuple[HttpAnswer, bool]:
    """The answer whose head is ``head``; and whether the connection stays open."""
    while True:
        version, status, headers = _parse_head(head)
        if not 100 <= status < 200:
            break
        head = await _read_head(reader)  # an interim answer (100 Continue): the real one follows
        if not head:
            raise ValueError("connection closed after an interim answer")
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    if status in (204, 304):
        return HttpAnswer(status, headers, b""), keep_alive
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return HttpAnswer(status, headers, await _read_chunked(reader)), keep_alive
    if "content-length" in headers:
        length = int(headers["content-length"])
        if not 0 <= length <= MAX_ANSWER_BYTES:
            raise ValueError(f"answer of {length} bytes is over the client's bound")
        return HttpAnswer(status, headers, await reader.readexactly(length)), keep_alive
    body = await reader.read(MAX_ANSWER_BYTES + 1)
    while len(body) <= MAX_ANSWER_BYTES:
        more = await reader.read(MAX_ANSWER_BYTES + 1 - len(body))
        if not more:
            break
        body += more
    if len(body) > MAX_ANSWER_BYTES:
        raise ValueError("answer over the client's bound")
    return HttpAnswer(status, headers, body), False


def _parse_head(head: bytes) -> tuple[str, int, dict[str, str]]:
    """(HTTP version, status, headers with lower-case names) of an answer's head."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP status line: {lines[0][:80]!r}")
    if len(lines) > MAX_HEADER_LINES + 3:
        raise ValueError(f"more than {MAX_HEADER_LINES} header lines")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"malformed header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return parts[0], int(parts[1]), headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readline()
        size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return bytes(body)
        if len(body) + size > MAX_ANSWER_BYTES:
            raise ValueError("answer over the client's bound")
        body += await reader.readexactly(size)
        await reader.readline()
