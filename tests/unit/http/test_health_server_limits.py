"""The health listener's limits (Tornado's own, plus the connection cap), and the ``limits:``
settings that size both listeners."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path
from typing import Any

import pytest
import tornado.web
import yaml

from raftnode.cli import main
from raftnode.defaults import Limits
from raftnode.http.connection_gate import Refusal
from raftnode.http.health_server import make_health_server


class _Ok(tornado.web.RequestHandler):
    def get(self) -> None:
        self.finish("ok\n")


async def _with_server(limits: Limits, client: Any) -> tuple[Any, list[Refusal]]:
    refusals: list[Refusal] = []
    server = make_health_server(
        tornado.web.Application([(r"/health", _Ok)]), limits, refusals.append
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    server.add_socket(sock)
    try:
        return await client(sock.getsockname()[1]), refusals
    finally:
        server.stop()
        await asyncio.wait_for(server.close_all_connections(), 5.0)


async def _request(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    data = await asyncio.wait_for(reader.read(), 5.0)
    writer.close()
    return data


def test_health_connections_over_the_cap_get_503_with_retry_after() -> None:
    limits = dataclasses.replace(Limits(), max_health_connections=1)

    async def client(port: int) -> tuple[bytes, bytes]:
        _, held = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.05)
        refused = await _request(port, b"GET /health HTTP/1.1\r\n\r\n")
        held.close()
        await asyncio.sleep(0.1)
        served = await _request(
            port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        return refused, served

    (refused, served), refusals = asyncio.run(_with_server(limits, client))
    assert refused.startswith(b"HTTP/1.1 503")
    assert b"Retry-After: 1" in refused
    assert served.startswith(b"HTTP/1.1 200")
    assert refusals == [Refusal.MAX_CONNECTIONS]


def test_health_headers_over_the_limit_and_trickled_headers_are_cut_off() -> None:
    limits = dataclasses.replace(Limits(), max_header_bytes=2048, header_timeout_ms=300)

    async def client(port: int) -> tuple[bytes, float]:
        oversized = await _request(port, b"GET /health HTTP/1.1\r\nX: " + b"a" * 8192 + b"\r\n\r\n")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for byte in b"GET /health HTTP/1.1\r\nX-Slow: " + b"s" * 100:
            if reader.at_eof():
                break
            writer.write(bytes([byte]))
            try:
                await asyncio.wait_for(reader.read(1), 0.05)
            except TimeoutError:
                continue
        await asyncio.wait_for(reader.read(), 5.0)
        writer.close()
        return oversized, loop.time() - started

    (oversized, trickled_for), _ = asyncio.run(_with_server(limits, client))
    assert not oversized.startswith(b"HTTP/1.1 200")  # closed, never served
    assert trickled_for < 3.0  # 100 bytes at 50 ms would take 5 s


def _config(tmp_path: Path, limits: dict[str, int]) -> Path:
    (tmp_path / "secret").write_text("0123456789abcdef0123456789abcdef")
    raw = {
        "node_id": 1,
        "data_dir": str(tmp_path / "d"),
        "listen": {
            "client": "127.0.0.1:8081",
            "health": "127.0.0.1:10001",
            "peer": "127.0.0.1:9081",
        },
        "cluster": [{"id": 1, "name": "n1", "peer": "127.0.0.1:9081", "client": "127.0.0.1:8081"}],
        "secret_file": str(tmp_path / "secret"),
        "limits": limits,
        "auth": {"anonymous_role": "admin"},
    }
    path = tmp_path / "n1.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("limits", "named"),
    [
        ({"max_header_bytes": 10}, "limits.max_header_bytes: must be >= 1024"),
        ({"header_timeout_ms": 0}, "limits.header_timeout_ms: must be >= 100"),
        ({"max_connections": "many"}, "limits.max_connections: must be an integer"),
        (
            {"max_request_line_bytes": 65536},
            "limits.max_request_line_bytes: must not exceed limits.max_header_bytes",
        ),
        (
            {"max_connections": 100, "max_connections_per_address": 200},
            "limits.max_connections_per_address: must not exceed limits.max_connections",
        ),
        ({"max_pipelined_bytes": 1}, "limits.max_pipelined_bytes: must be >= 65536"),
    ],
)
def test_check_config_names_a_bad_http_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], limits: dict[str, int], named: str
) -> None:
    assert main(["check-config", str(_config(tmp_path, limits))]) == 1
    captured = capsys.readouterr()
    assert named in captured.out + captured.err


def test_check_config_accepts_http_limits(tmp_path: Path) -> None:
    limits = {
        "max_connections": 10000,
        "max_connections_per_address": 1000,
        "idle_timeout_ms": 5000,
    }
    assert main(["check-config", str(_config(tmp_path, limits))]) == 0
