"""The client connection's bounds: header size and count, deadlines, caps, pipelining, order."""

from __future__ import annotations

import asyncio
import json
import socket
import time

from raftnode.http.connection import Request, Response, StreamedBody
from raftnode.http.connection_gate import ConnectionGate, Refusal
from tests.unit.http.wire import answers, echo, limits, read_all, serving

GET = b"GET /kv/a HTTP/1.1\r\nHost: x\r\n\r\n"


def _post(body: bytes) -> bytes:
    return b"POST /kv HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def _send_and_read(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await read_all(reader)
    writer.close()
    return data


def test_a_valid_write_pipelined_before_a_malformed_request_is_answered_first() -> None:
    async def run() -> list[tuple[int, dict[str, str], bytes]]:
        async def slow(request: Request) -> Response:
            await asyncio.sleep(0.05)  # the malformed request is parsed while this one runs
            return await echo(request)

        async with serving(limits(), slow) as served:
            raw = _post(b'{"key":"k","value":"v"}') + b"GET /kv/\x01 HTTP/1.1\r\n\r\n" + GET
            return answers(await _send_and_read(served.port, raw))

    got = asyncio.run(run())
    assert [status for status, _, _ in got] == [200, 400]
    assert json.loads(got[0][2])["method"] == "POST"
    assert json.loads(got[1][2])["error"] == "bad_request"
    assert got[1][1]["connection"] == "close"


def test_many_header_lines_get_431_naming_the_limit_and_the_answers_owed_first() -> None:
    async def run() -> tuple[list[tuple[int, dict[str, str], bytes]], list[Refusal]]:
        async with serving(limits(max_header_bytes=4096)) as served:
            big = b"GET /kv/b HTTP/1.1\r\n" + b"".join(
                b"X-Pad-%d: %s\r\n" % (i, b"v" * 100) for i in range(100)
            )
            got = answers(await _send_and_read(served.port, GET + big + b"\r\n"))
            return got, served.refusals

    got, refusals = asyncio.run(run())
    assert [status for status, _, _ in got] == [200, 431]
    body = json.loads(got[1][2])
    assert body["error"] == "headers_too_large"
    assert "limits.max_header_bytes" in body["message"]
    assert refusals == [Refusal.HEADERS_TOO_LARGE]


def test_one_endless_header_line_is_refused_without_buffering_it_all() -> None:
    async def run() -> tuple[int, float]:
        async with serving(limits(max_header_bytes=4096)) as served:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(b"GET /kv/a HTTP/1.1\r\nX-Endless: ")
            started = time.monotonic()
            data = b""
            for _ in range(200):  # up to 200 x 8 KiB, far past the limit; stops at the answer
                writer.write(b"a" * 8192)
                await writer.drain()
                await asyncio.sleep(0.005)
                if reader.at_eof() or len(reader._buffer) > 0:  # type: ignore[attr-defined]
                    break
            data = await read_all(reader)
            writer.close()
            return answers(data)[0][0], time.monotonic() - started

    status, seconds = asyncio.run(run())
    assert status == 431
    assert seconds < 2.0


def test_too_many_header_fields_get_431() -> None:
    raw = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(20)) + b"\r\n"

    async def run() -> bytes:
        async with serving(limits(max_header_count=10)) as served:
            return await _send_and_read(served.port, raw)

    status, _, body = answers(asyncio.run(run()))[0]
    assert status == 431
    assert "limits.max_header_count" in json.loads(body)["message"]


def test_a_long_request_target_gets_431() -> None:
    raw = b"GET /kv/" + b"k" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"

    async def run() -> bytes:
        async with serving(limits(max_request_line_bytes=1024)) as served:
            return await _send_and_read(served.port, raw)

    status, _, body = answers(asyncio.run(run()))[0]
    assert status == 431
    assert "limits.max_request_line_bytes" in json.loads(body)["message"]


def test_a_body_over_the_limit_is_refused_from_its_content_length_alone() -> None:
    async def run() -> bytes:
        async with serving(limits(max_body_bytes=100)) as served:
            # Only the headers are sent: the answer must not wait for a body.
            return await _send_and_read(
                served.port, b"POST /kv HTTP/1.1\r\nContent-Length: 100000\r\n\r\n"
            )

    status, _, body = answers(asyncio.run(run()))[0]
    assert status == 413
    assert json.loads(body)["error"] == "too_large"


def test_a_byte_every_interval_is_dropped_at_the_header_deadline() -> None:
    async def run() -> tuple[list[tuple[int, dict[str, str], bytes]], float, list[Refusal]]:
        async with serving(limits(header_timeout=0.4, idle_timeout=5.0)) as served:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            started = time.monotonic()
            for byte in b"GET /kv/a HTTP/1.1\r\nX-Slow: " + b"s" * 100:
                if reader.at_eof() or len(reader._buffer) > 0:  # type: ignore[attr-defined]
                    break
                writer.write(bytes([byte]))
                await asyncio.sleep(0.05)
            data = await read_all(reader)
            writer.close()
            return answers(data), time.monotonic() - started, served.refusals

    got, seconds, refusals = asyncio.run(run())
    assert [status for status, _, _ in got] == [408]
    assert "limits.header_timeout_ms" in json.loads(got[0][2])["message"]
    assert 0.3 < seconds < 3.0  # 100 trickled bytes would take 5 s
    assert refusals == [Refusal.HEADER_TIMEOUT]


def test_a_slow_body_gets_408_after_the_body_deadline() -> None:
    async def run() -> bytes:
        async with serving(limits(body_timeout=0.3)) as served:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(b"POST /kv HTTP/1.1\r\nContent-Length: 50\r\n\r\nonly part")
            data = await read_all(reader)
            writer.close()
            return data

    status, _, body = answers(asyncio.run(run()))[0]
    assert status == 408
    assert "limits.body_timeout_ms" in json.loads(body)["message"]


def test_stray_bytes_between_requests_do_not_keep_an_idle_connection_open() -> None:
    async def run() -> tuple[int, float]:
        async with serving(limits(idle_timeout=0.3)) as served:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(GET)
            until_closed = asyncio.ensure_future(read_all(reader))
            started = time.monotonic()
            while not until_closed.done() and time.monotonic() - started < 5.0:
                writer.write(b"\r\n")  # blank lines: never a request
                await asyncio.sleep(0.05)
            data = await until_closed
            writer.close()
            return len(answers(data)), time.monotonic() - started

    count, seconds = asyncio.run(run())
    assert count == 1
    assert seconds < 2.0


def test_an_unknown_method_gets_501_and_garbage_gets_400() -> None:
    async def run(raw: bytes) -> tuple[int, dict[str, str], bytes]:
        async with serving(limits()) as served:
            return answers(await _send_and_read(served.port, raw))[0]

    status, _, body = asyncio.run(run(b"FROB /kv HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert (status, json.loads(body)["error"]) == (501, "not_implemented")
    status, _, body = asyncio.run(run(b"\x16\x03\x01 tls hello\r\n\r\n"))
    assert (status, json.loads(body)["error"]) == (400, "bad_request")


def test_connections_over_the_per_address_cap_get_503_with_retry_after() -> None:
    async def run() -> tuple[list[tuple[int, dict[str, str], bytes]], list[Refusal], int]:
        gate = ConnectionGate(max_connections=10, max_per_address=2)
        async with serving(limits(), gate=gate) as served:
            held = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(2)]
            await asyncio.sleep(0.05)
            refused = await _send_and_read(served.port, GET)
            # Another source address is under its own cap.
            sock = socket.socket()
            sock.bind(("127.0.0.2", 0))
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", served.port))
            other_reader, other_writer = await asyncio.open_connection(sock=sock)
            other_writer.write(b"GET /kv/x HTTP/1.1\r\nConnection: close\r\n\r\n")
            other = await read_all(other_reader)
            for _, writer in held:
                writer.close()
            other_writer.close()
            await asyncio.sleep(0.1)
            open_after = gate.open_connections
            return answers(refused) + answers(other), served.refusals, open_after

    got, refusals, open_after = asyncio.run(run())
    assert [status for status, _, _ in got] == [503, 200]
    assert got[0][1]["retry-after"] == "1"
    assert json.loads(got[0][2])["error"] == "too_many_connections"
    assert "limits.max_connections_per_address" in json.loads(got[0][2])["message"]
    assert refusals == [Refusal.MAX_CONNECTIONS_PER_ADDRESS]
    assert open_after == 0


def test_the_global_cap_refuses_and_a_closed_connection_frees_its_place() -> None:
    async def run() -> list[int]:
        gate = ConnectionGate(max_connections=1, max_per_address=1)
        async with serving(limits(), gate=gate) as served:
            _, writer = await asyncio.open_connection("127.0.0.1", served.port)
            await asyncio.sleep(0.05)
            refused = answers(await _send_and_read(served.port, GET))[0][0]
            writer.close()
            await asyncio.sleep(0.1)
            again = answers(
                await _send_and_read(served.port, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            )[0][0]
            return [refused, again]

    assert asyncio.run(run()) == [503, 200]


def test_pipelining_is_bounded_in_bytes_and_every_answer_comes_in_order() -> None:
    async def run() -> tuple[list[tuple[int, dict[str, str], bytes]], int, bool]:
        release = asyncio.Event()  # the first request's handler holds the rest in the queue
        seen: list[str] = []

        async def blocked(request: Request) -> Response:
            seen.append(request.body.decode()[:8])
            await release.wait()
            return await echo(request)

        connection_limits = limits(max_pipelined_bytes=3000, max_pipelined_requests=100)
        async with serving(connection_limits, blocked) as served:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            body = b"%08d" + b"x" * 992
            for i in range(20):  # one read each: the bound holds to within one read
                writer.write(_post(body % i))
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            connection = served.connections[0]
            paused, queued = connection.reading_paused, connection._queued_bytes
            release.set()
            writer.write(b"GET /end HTTP/1.1\r\nConnection: close\r\n\r\n")
            got = answers(await read_all(reader))
            writer.close()
            return got, queued, paused

    got, queued, paused = asyncio.run(run())
    assert paused
    assert queued < 3000 + 1100  # stopped within one request of the byte bound
    assert [s for s, _, _ in got] == [200] * 21
    assert [json.loads(b)["body"][:8] for _, _, b in got[:20]] == [f"{i:08d}" for i in range(20)]


def test_a_client_that_reads_nothing_stops_being_read_and_is_then_dropped() -> None:
    async def run() -> tuple[bool, bool]:
        async def large(request: Request) -> Response:
            return Response(200, b"x" * (256 << 10))

        connection_limits = limits(write_buffer_high_bytes=64 << 10, idle_timeout=0.5)
        async with serving(connection_limits, large) as served:
            sock = socket.create_connection(("127.0.0.1", served.port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(sock, GET * 20)
            await asyncio.sleep(0.3)
            paused = served.connections[0].reading_paused
            await asyncio.sleep(1.0)  # > idle_timeout with nothing read: the server aborts
            dropped = served.connections[0]._transport.is_closing()  # type: ignore[union-attr]
            sock.close()
            return paused, dropped

    paused, dropped = asyncio.run(run())
    assert paused
    assert dropped


def test_gate_counts_per_address_and_in_all() -> None:
    gate = ConnectionGate(max_connections=3, max_per_address=2)
    assert gate.admit("a") is None and gate.admit("a") is None
    assert gate.admit("a") is Refusal.MAX_CONNECTIONS_PER_ADDRESS
    assert gate.admit("b") is None
    assert gate.admit("c") is Refusal.MAX_CONNECTIONS
    gate.release("a")
    assert gate.open_from("a") == 1 and gate.open_connections == 2
    gate.release("zzz")  # never admitted: nothing changes
    assert gate.open_connections == 2


def test_a_streamed_answer_not_read_in_time_closes_and_reports_done() -> None:
    done: list[float] = []
    size = 64 << 20  # far more than the kernel's socket buffers can absorb

    async def big(request: Request) -> Response:
        started = time.monotonic()
        body = StreamedBody(
            b"x" * size,
            size,
            send_seconds=0.3,
            on_done=lambda: done.append(time.monotonic() - started),
        )
        return Response(200, stream=body, content_type="application/octet-stream")

    async def go() -> None:
        async with serving(limits(), big) as served:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", served.port))
            sock.setblocking(False)
            _, writer = await asyncio.open_connection(sock=sock)
            writer.write(b"GET /snapshot HTTP/1.1\r\nHost: x\r\n\r\n")
            for _ in range(50):  # read nothing; the server gives up after 0.3 s
                if done:
                    break
                await asyncio.sleep(0.1)
            writer.close()

    asyncio.run(go())
    assert len(done) == 1 and 0.3 <= done[0] < 3.0, done
