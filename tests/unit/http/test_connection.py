"""The HTTP/1.1 connection layer of the client API, over real loopback sockets."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time

from raftnode.defaults import Limits
from raftnode.http.connection import ConnectionLimits, HttpConnection, Request, Response


def _refuse(status: int, code: str, message: str) -> Response:
    return Response(status, json.dumps({"error": code, "message": message}).encode())


async def _echo(request: Request) -> Response:
    if request.path == "/slow":
        await asyncio.sleep(0.05)
    body = {"method": request.method, "path": request.path, "query": request.query}
    body["body"] = request.body.decode()
    return Response(200, json.dumps(body).encode(), {"X-Test": "1"})


def _limits(max_body: int = 1000, idle: float = 5.0) -> ConnectionLimits:
    return dataclasses.replace(
        ConnectionLimits.from_config(Limits(), max_body_bytes=max_body), idle_timeout=idle
    )


async def _exchange(raw: bytes, *, max_body: int = 1000, idle: float = 5.0) -> bytes:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HttpConnection(_echo, _refuse, _limits(max_body, idle), wall_clock=time.time),
        "127.0.0.1",
        0,
    )
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 5.0)  # until the server closes
        writer.close()
        return data
    finally:
        server.close()


def _bodies(data: bytes) -> list[tuple[int, bytes]]:
    """Split a stream of responses into (status, body) pairs using Content-Length."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        sizes = [int(x.split(b":")[1]) for x in lines if x.lower().startswith(b"content-length")]
        length = sizes[0]
        out.append((status, rest[:length]))
        data = rest[length:]
    return out


def test_pipelined_requests_are_answered_in_order_and_close_is_honoured() -> None:
    raw = (
        b"GET /slow?a=1&a=2 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /kv HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /last%20one HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    answers = _bodies(asyncio.run(_exchange(raw)))
    assert [s for s, _ in answers] == [200, 200, 200]
    first, second, third = (json.loads(b) for _, b in answers)
    assert first["path"] == "/slow" and first["query"] == {"a": ["1", "2"]}
    assert second["method"] == "POST" and second["body"] == "hello"
    assert third["path"] == "/last one"


def test_body_over_the_limit_gets_413_and_the_connection_closes() -> None:
    raw = b"POST /kv HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000
    answers = _bodies(asyncio.run(_exchange(raw, max_body=1000)))
    assert answers[0][0] == 413
    assert json.loads(answers[0][1])["error"] == "too_large"


def test_malformed_request_gets_400() -> None:
    answers = _bodies(asyncio.run(_exchange(b"NOT HTTP AT ALL\r\n\r\n")))
    assert answers[0][0] == 400
    assert "malformed" in json.loads(answers[0][1])["message"]


def test_http_1_0_without_keep_alive_is_answered_then_closed() -> None:
    data = asyncio.run(_exchange(b"GET /a HTTP/1.0\r\n\r\n"))
    assert b"Connection: close" in data
    assert _bodies(data)[0][0] == 200


def test_idle_connection_is_closed() -> None:
    async def idle_client() -> bytes:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: HttpConnection(_echo, _refuse, _limits(10, 0.1), wall_clock=time.time),
            "127.0.0.1",
            0,
        )
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            data = await asyncio.wait_for(reader.read(), 5.0)
            writer.close()
            return data
        finally:
            server.close()

    assert asyncio.run(idle_client()) == b""
