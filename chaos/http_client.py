"""A bounded HTTP/1.1 request over asyncio streams that knows whether it was sent.

The chaos workload must tell "certainly not sent" (the connection was refused or never
established: the operation did nothing) from "sent, answer lost" (a timeout or a reset after
the request went out: the operation may have applied). One connection per request, closed
after the answer, so a failure belongs to exactly one request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Answer:
    """``status`` 0: no HTTP answer; then ``sent`` says whether the request went out."""

    status: int
    sent: bool
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: str = ""

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


async def request(
    base_url: str,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 6.0,
) -> Answer:
    """One request, bounded by ``timeout`` in total (connect + send + answer)."""
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    payload = b"" if body is None else json.dumps(body).encode()
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Connection: close",
        f"Content-Length: {len(payload)}",
    ]
    if body is not None:
        lines.append("Content-Type: application/json")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (TimeoutError, OSError) as e:
        return Answer(0, sent=False, error=f"connect: {type(e).__name__}")
    try:
        writer.write(raw)
        remaining = max(deadline - loop.time(), 0.001)
        return await asyncio.wait_for(_read_answer(reader), remaining)
    except TimeoutError:
        return Answer(0, sent=True, error="timeout")
    except (OSError, asyncio.IncompleteReadError, ValueError) as e:
        return Answer(0, sent=True, error=f"lost: {type(e).__name__}")
    finally:
        writer.close()
        with contextlib.suppress(TimeoutError, OSError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


async def _read_answer(reader: asyncio.StreamReader) -> Answer:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    if not version.startswith("HTTP/"):
        raise ValueError(f"not an HTTP answer: {status_line!r}")
    status = int(rest.split(" ", 1)[0])
    headers: dict[str, str] = {}
    for line in header_lines:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read(1 << 20)
    return Answer(status, sent=True, headers=headers, body=body)
