"""Both transports against a tiny HTTP/1.1 server on loopback: kept-alive connections are
reused, a connection the server closed while idle costs a resend (not an error), chunked and
close-delimited answers are read whole, and a silent server ends in a timeout."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from raftnode.client import Client
from raftnode.client.async_transport import AsyncHttpTransport
from raftnode.client.endpoints import Endpoint, tls_context
from raftnode.client.retry import AttemptTimedOut, TransportError
from raftnode.client.transport import HttpTransport


@dataclass
class TinyServer:
    """Answers ``GET /n`` with ``n`` (the request count); ``/chunked``, ``/eof`` (no length,
    closes), ``/silent`` (never answers). With ``close_after_answer`` it closes every
    connection after answering, without saying so: what an idle timeout looks like."""

    close_after_answer: bool = False
    tls: ssl.SSLContext | None = None
    connections: int = 0
    requests: int = 0
    hung_up: int = 0
    port: int = 0
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                length = 0
                while (h := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = h.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                # Read before answering: the test sets it after an answer, which may reach it
                # before this handler looked at the flag.
                closing = self.close_after_answer
                self.requests += 1
                path = line.split()[1].decode()
                if path == "/silent":  # never answers; notes when the client hangs up
                    await asyncio.wait_for(reader.read(), 30)
                    self.hung_up += 1
                    return
                if path == "/chunked":
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    writer.write(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
                elif path == "/eof":
                    writer.write(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
                    await writer.drain()
                    writer.close()
                    return
                else:
                    body = str(self.requests).encode()
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                    )
                await writer.drain()
                if closing:
                    writer.close()
                    return
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            return

    def start(self) -> None:
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            server = self.loop.run_until_complete(
                asyncio.start_server(self.handle, "127.0.0.1", 0, ssl=self.tls)
            )
            self.port = server.sockets[0].getsockname()[1]
            started.set()
            self.loop.run_forever()
            server.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(5)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("https" if self.tls else "http", "127.0.0.1", self.port)


@pytest.fixture
def server() -> Iterator[TinyServer]:
    s = TinyServer()
    s.start()
    yield s
    s.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sync_transport_reuses_a_connection_and_resends_once_after_an_idle_close(
    server: TinyServer,
) -> None:
    t = HttpTransport()
    bodies = [t.request(server.endpoint, "GET", "/n", None, {}, 2.0).body for _ in range(3)]
    assert bodies == [b"1", b"2", b"3"] and server.connections == 1
    server.close_after_answer = True
    t.request(server.endpoint, "GET", "/n", None, {}, 2.0)  # answered, then closed silently
    assert t.request(server.endpoint, "GET", "/n", None, {}, 2.0).body == b"5"
    assert server.connections == 2 and server.requests == 5
    server.close_after_answer = False
    assert t.request(server.endpoint, "GET", "/chunked", None, {}, 2.0).body == b"hello world"
    t.close()


def test_async_transport_reuses_a_connection_and_resends_once_after_an_idle_close(
    server: TinyServer,
) -> None:
    async def run() -> None:
        t = AsyncHttpTransport()
        ep = server.endpoint
        bodies = [(await t.request(ep, "POST", "/n", b"{}", {}, 2.0)).body for _ in range(3)]
        assert bodies == [b"1", b"2", b"3"] and server.connections == 1
        server.close_after_answer = True
        await t.request(ep, "GET", "/n", None, {}, 2.0)
        await asyncio.sleep(0.05)  # the server's close arrives while the connection is idle
        assert (await t.request(ep, "GET", "/n", None, {}, 2.0)).body == b"5"
        server.close_after_answer = False
        assert (await t.request(ep, "GET", "/chunked", None, {}, 2.0)).body == b"hello world"
        assert (await t.request(ep, "GET", "/eof", None, {}, 2.0)).body == b"until the end"
        await t.close()

    asyncio.run(run())


def test_a_silent_server_times_out_and_a_closed_port_is_refused_as_not_sent(
    server: TinyServer,
) -> None:
    closed = Endpoint("http", "127.0.0.1", free_port())
    t = HttpTransport()
    with pytest.raises(AttemptTimedOut):
        t.request(server.endpoint, "GET", "/silent", None, {}, 0.3)
    with pytest.raises(TransportError) as info:
        t.request(closed, "GET", "/n", None, {}, 1.0)
    assert info.value.sent is False

    async def run() -> None:
        at = AsyncHttpTransport()
        with pytest.raises(AttemptTimedOut):
            await at.request(server.endpoint, "GET", "/silent", None, {}, 0.3)
        with pytest.raises(TransportError) as ainfo:
            await at.request(closed, "GET", "/n", None, {}, 1.0)
        assert ainfo.value.sent is False
        await at.close()

    asyncio.run(run())


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_both_transports_speak_tls_verified_against_the_given_ca(tmp_path: Path) -> None:
    cert, key = tmp_path / "node.pem", tmp_path / "node.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    server = TinyServer(tls=server_tls)
    server.start()
    try:
        context = tls_context(ca_file=str(cert))
        assert (
            HttpTransport(context).request(server.endpoint, "GET", "/n", None, {}, 5.0).body == b"1"
        )

        async def run() -> bytes:
            t = AsyncHttpTransport(context)
            try:
                return (await t.request(server.endpoint, "GET", "/n", None, {}, 5.0)).body
            finally:
                await t.close()

        assert asyncio.run(run()) == b"2"
        # Without the CA the node's certificate is not trusted: refused before sending.
        with pytest.raises(TransportError, match="TLS") as info:
            HttpTransport(ssl.create_default_context()).request(
                server.endpoint, "GET", "/n", None, {}, 5.0
            )
        assert info.value.sent is False
        # And through Client, with the CA file as an option.
        with Client([server.endpoint.url], ca_file=str(cert), timeout=5.0) as kv:
            assert kv.settings.ssl_context is not None
    finally:
        server.stop()


def test_a_cancelled_async_request_does_not_leave_its_connection_for_reuse(
    server: TinyServer,
) -> None:
    async def run() -> None:
        t = AsyncHttpTransport()
        task = asyncio.create_task(t.request(server.endpoint, "GET", "/silent", None, {}, 5.0))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):  # the client closed it: the server sees the end at once
            if server.hung_up:
                break
            await asyncio.sleep(0.02)
        assert server.hung_up == 1
        assert (await t.request(server.endpoint, "GET", "/n", None, {}, 2.0)).body == b"2"
        await t.close()

    asyncio.run(run())
