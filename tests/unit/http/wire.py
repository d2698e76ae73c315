"""A real loopback server around one ``HttpConnection`` per client, and a response splitter,
for the connection-layer tests."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from raftnode.defaults import Limits
from raftnode.http.connection import ConnectionLimits, Handler, HttpConnection, Request, Response
from raftnode.http.connection_gate import ConnectionGate, Refusal


def refuse(status: int, code: str, message: str) -> Response:
    return Response(status, json.dumps({"error": code, "message": message}).encode())


async def echo(request: Request) -> Response:
    body = {"method": request.method, "path": request.path, "body": request.body.decode()}
    return Response(200, json.dumps(body).encode())


def limits(**changes: Any) -> ConnectionLimits:
    """The default limits with ``changes``, a 1000-byte body cap unless changed."""
    base = ConnectionLimits.from_config(Limits(), max_body_bytes=1000)
    return dataclasses.replace(base, **changes)


@dataclasses.dataclass
class Served:
    port: int
    refusals: list[Refusal]
    connections: list[HttpConnection]


@contextlib.asynccontextmanager
async def serving(
    connection_limits: ConnectionLimits,
    handler: Handler = echo,
    gate: ConnectionGate | None = None,
) -> AsyncIterator[Served]:
    loop = asyncio.get_running_loop()
    refusals: list[Refusal] = []
    connections: list[HttpConnection] = []

    def connection() -> HttpConnection:
        c = HttpConnection(
            handler,
            refuse,
            connection_limits,
            wall_clock=time.time,
            gate=gate,
            count_refusal=refusals.append,
        )
        connections.append(c)
        return c

    server = await loop.create_server(connection, "127.0.0.1", 0)
    try:
        yield Served(server.sockets[0].getsockname()[1], refusals, connections)
    finally:
        server.close()
        for c in connections:
            c.close()


async def read_all(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    """Everything until the server closes (bounded)."""
    return await asyncio.wait_for(reader.read(), timeout)


def answers(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a stream of responses into (status, headers, body) using Content-Length."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers["content-length"])
        out.append((status, headers, rest[:length]))
        data = rest[length:]
    return out
