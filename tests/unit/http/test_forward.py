"""Forwarding to the leader over kept-alive connections, with failures typed by whether the
request could have reached it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import uvloop

from raftnode.http.forward import ForwardNotSent, ForwardUnknown, LeaderConnections

Reply = Callable[[bytes], Awaitable[bytes | None]]


async def serve(reply: Reply) -> tuple[asyncio.Server, int, list[int]]:
    """A tiny HTTP/1.1 server: each request (read up to its body) gets ``reply``'s bytes; None
    closes the connection without answering. Returns the server, its port and a list that
    counts connections."""
    accepted: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                answer = await reply(head + body)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, port, accepted


def ok(body: bytes = b'{"ok":true}', extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Raftnode-Revision: 7\r\n"
        f"{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@pytest.mark.parametrize("runner", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_requests_reuse_one_connection_and_carry_hops_and_key(
    runner: Callable[[Awaitable[list[int]]], list[int]],
) -> None:
    seen: list[bytes] = []

    async def reply(request: bytes) -> bytes | None:
        seen.append(request)
        return ok()

    async def go() -> list[int]:
        server, port, accepted = await serve(reply)
        pool = LeaderConnections()
        try:
            for i in range(5):
                r = await pool.forward(
                    "127.0.0.1", port, "POST", "/kv", b'{"key":"k"}', i % 2, 5.0, "key-1"
                )
                assert r.status == 200 and r.body == b'{"ok":true}'
                assert r.headers == {"Content-Type": "application/json", "X-Raftnode-Revision": "7"}
        finally:
            pool.close()
            server.close()
        return accepted

    assert len(runner(go())) == 1
    assert b"X-Raftnode-Hops: 1" in seen[0] and b"X-Raftnode-Hops: 2" in seen[1]
    assert all(b"Idempotency-Key: key-1" in r and r.endswith(b'{"key":"k"}') for r in seen)


def test_a_refused_connection_was_not_sent() -> None:
    async def go() -> None:
        server, port, _ = await serve(lambda r: asyncio.sleep(0, ok()))
        server.close()
        await server.wait_closed()
        await LeaderConnections().forward("127.0.0.1", port, "POST", "/kv", b"{}", 0, 2.0)

    with pytest.raises(ForwardNotSent):
        asyncio.run(go())


def test_a_connection_closed_after_the_request_is_unknown() -> None:
    async def go() -> None:
        async def close(request: bytes) -> bytes | None:
            return None

        server, port, _ = await serve(close)
        try:
            await LeaderConnections().forward("127.0.0.1", port, "POST", "/kv", b"{}", 0, 2.0)
        finally:
            server.close()

    with pytest.raises(ForwardUnknown, match="closed"):
        asyncio.run(go())


def test_no_answer_within_the_timeout_is_unknown_and_the_connection_is_dropped() -> None:
    async def go() -> int:
        async def slow(request: bytes) -> bytes | None:
            if b"/slow" in request:
                await asyncio.sleep(5)
            return ok()

        server, port, accepted = await serve(slow)
        pool = LeaderConnections()
        try:
            with pytest.raises(ForwardUnknown, match=r"within 0\.2s"):
                await pool.forward("127.0.0.1", port, "POST", "/slow", b"{}", 0, 0.2)
            r = await pool.forward("127.0.0.1", port, "POST", "/kv", b"{}", 0, 2.0)
            assert r.status == 200
        finally:
            pool.close()
            server.close()
        return len(accepted)

    assert asyncio.run(go()) == 2  # the timed-out connection was not reused


def test_a_connection_the_leader_closed_while_idle_is_not_reused() -> None:
    async def go() -> int:
        async def once(request: bytes) -> bytes | None:
            return ok(extra="Connection: close\r\n")

        server, port, accepted = await serve(once)
        pool = LeaderConnections()
        try:
            for _ in range(3):
                r = await pool.forward("127.0.0.1", port, "GET", "/kv/k", b"", 0, 2.0)
                assert r.status == 200
        finally:
            pool.close()
            server.close()
        return len(accepted)

    assert asyncio.run(go()) == 3
