"""PeerStream, the peer connection's protocol: frames cut anywhere arrive whole and in order,
a too-large header or a byte on a write-only stream closes it, the hello's reads end with the
connection's real error, a peer that takes nothing is dropped after WRITE_TIMEOUT, and TLS
starts from the first byte and fails with OpenSSL's reason."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest

from raftnode.transport import peer_stream
from raftnode.transport.codec import frame
from raftnode.transport.peer_stream import PeerStream, StreamClosed
from raftnode.transport.peer_tls import (
    PeerTlsSettings,
    Refusal,
    classify,
    client_context,
    peer_uri,
    server_context,
)
from tests.certs import make_ca, make_leaf


class FakeTransport:
    """What PeerStream uses of a transport; ``abort``/``close`` end the connection as a
    loop would, on the next iteration."""

    def __init__(self, protocol: PeerStream) -> None:
        self.protocol = protocol
        self.written: list[bytes] = []
        self.closing = False
        self.reading = True

    def get_extra_info(self, name: str) -> Any:
        return None

    def set_write_buffer_limits(self, high: int) -> None:
        self.high = high

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def abort(self) -> None:
        self.close()

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)


def _connected() -> tuple[PeerStream, FakeTransport]:
    stream = PeerStream()
    transport = FakeTransport(stream)
    stream.connection_made(transport)
    return stream, transport


def _collect(into: list[bytes]) -> peer_stream.FrameSink:
    def sink(body: bytes) -> bool:
        into.append(body)
        return True

    return sink


def test_frames_cut_at_every_byte_arrive_whole_and_in_order() -> None:
    async def scenario() -> list[bytes]:
        stream, _ = _connected()
        got: list[bytes] = []
        stream.data_received(b"rest of the hello")
        assert await stream.read_exactly(4) == b"rest"
        assert await stream.read_exactly(13) == b" of the hello"
        bodies = [b"a", b"", b"x" * 300, b"last"]
        wire = b"".join(frame(b) for b in bodies)
        stream.data_received(wire[:3])  # before the switch: kept for the frames
        stream.start_frames(_collect(got), limit=1000, tag=0)
        for i in range(3, len(wire)):
            stream.data_received(wire[i : i + 1])
        return got

    assert asyncio.run(scenario()) == [b"a", b"", b"x" * 300, b"last"]


def test_a_header_above_the_limit_closes_the_stream_and_says_how_large() -> None:
    async def scenario() -> tuple[int, list[bytes], bool]:
        stream, transport = _connected()
        got: list[bytes] = []
        stream.start_frames(_collect(got), limit=10, tag=0)
        stream.data_received(frame(b"ok") + frame(b"y" * 11))
        await asyncio.wait_for(stream.closed, 1.0)
        return stream.oversized, got, transport.closing

    assert asyncio.run(scenario()) == (11, [b"ok"], True)


def test_a_sink_refusing_a_frame_closes_the_stream_and_gets_no_more() -> None:
    async def scenario() -> list[bytes]:
        stream, _ = _connected()
        got: list[bytes] = []

        def sink(body: bytes) -> bool:
            got.append(body)
            return body != b"bad"

        stream.start_frames(sink, limit=100, tag=0)
        stream.data_received(frame(b"1") + frame(b"bad") + frame(b"never"))
        await asyncio.wait_for(stream.closed, 1.0)
        return got

    assert asyncio.run(scenario()) == [b"1", b"bad"]


def test_a_record_tag_is_part_of_each_body() -> None:
    async def scenario() -> list[bytes]:
        stream, _ = _connected()
        got: list[bytes] = []
        stream.start_frames(_collect(got), limit=100, tag=4)
        stream.data_received(frame(b"ab") + b"TAG1" + frame(b"c"))
        stream.data_received(b"TAG2")
        return got

    assert asyncio.run(scenario()) == [b"abTAG1", b"cTAG2"]


def test_a_byte_on_a_write_only_stream_closes_it() -> None:
    async def scenario() -> BaseException | None:
        stream, _ = _connected()
        stream.write_only()
        stream.data_received(b"\x00")
        return await asyncio.wait_for(stream.closed, 1.0)

    error = asyncio.run(scenario())
    assert isinstance(error, StreamClosed) and "wrote after the hello" in str(error)


def test_a_read_of_the_hello_ends_with_the_connections_real_error() -> None:
    async def scenario() -> StreamClosed:
        stream, _ = _connected()
        stream.data_received(b"ab")
        reading = asyncio.ensure_future(stream.read_exactly(3))
        await asyncio.sleep(0)
        stream.connection_lost(ConnectionResetError("reset by peer"))
        with pytest.raises(StreamClosed) as caught:
            await reading
        with pytest.raises(StreamClosed):
            await stream.read_exactly(3)  # after the close as well
        return caught.value

    error = asyncio.run(scenario())
    assert isinstance(error.real_error, ConnectionResetError)


def test_a_peer_that_takes_nothing_is_dropped_after_the_write_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(peer_stream, "WRITE_TIMEOUT", 0.05)

    async def scenario() -> tuple[BaseException | None, BaseException | None]:
        stalled, _ = _connected()
        stalled.pause_writing()
        drained, _ = _connected()
        drained.pause_writing()
        await asyncio.sleep(0.01)
        drained.resume_writing()  # took its data in time: stays
        error = await asyncio.wait_for(stalled.closed, 1.0)
        await asyncio.sleep(0.1)
        return error, (drained.closed.result() if drained.closed.done() else None)

    stalled_error, drained_error = asyncio.run(scenario())
    assert isinstance(stalled_error, TimeoutError)
    assert drained_error is None


def test_a_hello_write_waits_for_the_buffer_to_drain() -> None:
    async def scenario() -> list[str]:
        stream, transport = _connected()
        events: list[str] = []
        stream.pause_writing()
        writing = asyncio.ensure_future(stream.write(b"hello"))
        await asyncio.sleep(0.01)
        events.append(f"done={writing.done()}")
        stream.resume_writing()
        await asyncio.wait_for(writing, 1.0)
        events.append(f"done={writing.done()} written={transport.written}")
        return events

    assert asyncio.run(scenario()) == ["done=False", "done=True written=[b'hello']"]


def _tls_pair(
    tmp_path: Path, ca_name: str = "raftnode test CA"
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = make_ca(tmp_path / "ca", ca_name)
    server = make_leaf(ca, tmp_path, "n1", "n1", uris=(peer_uri(1),))
    client = make_leaf(ca, tmp_path, "n2", "n2", uris=(peer_uri(2),))
    return (
        server_context(PeerTlsSettings(server.cert_file, server.key_file, ca.cert_file)),
        client_context(PeerTlsSettings(client.cert_file, client.key_file, ca.cert_file)),
    )


async def _dial_tls(
    client_ctx: ssl.SSLContext,
) -> tuple[asyncio.Server, PeerStream, asyncio.Future[None], PeerStream]:
    """A loopback listener and a dialer whose TLS handshake (with ``client_ctx``) is under way
    in a task; the listener's stream has not started TLS yet."""
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[PeerStream] = loop.create_future()

    def factory() -> PeerStream:
        stream = PeerStream()
        accepted.set_result(stream)
        return stream

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    dialer = PeerStream()
    await loop.create_connection(lambda: dialer, "127.0.0.1", port)
    dialing = asyncio.ensure_future(
        dialer.start_tls(client_ctx, server_side=False, host="127.0.0.1", timeout=5.0)
    )
    return server, dialer, dialing, await accepted


def test_tls_starts_even_when_the_dialers_first_flight_came_before_the_listener_began(
    tmp_path: Path,
) -> None:
    """A listener starts its TLS in a task, a loop iteration or more after the connection was
    made; the dialer's ClientHello may be in the buffer by then, and must not be lost (it was
    with ``loop.start_tls``: both sides waited out the handshake timeout)."""
    server_ctx, client_ctx = _tls_pair(tmp_path)

    async def scenario() -> tuple[bytes, bytes, bool]:
        server, dialer, dialing, listener = await _dial_tls(client_ctx)
        for _ in range(100):  # until the ClientHello sits in the listener's plain buffer
            if listener._buffer:
                break
            await asyncio.sleep(0.01)
        early = bool(listener._buffer)
        await listener.start_tls(server_ctx, server_side=True, host=None, timeout=5.0)
        await asyncio.wait_for(dialing, 5.0)
        await dialer.write(b"ping")
        got = await asyncio.wait_for(listener.read_exactly(4), 5.0)
        await listener.write(b"pong")
        back = await asyncio.wait_for(dialer.read_exactly(4), 5.0)
        dialer.close()
        listener.close()
        server.close()
        return got, back, early

    assert asyncio.run(scenario()) == (b"ping", b"pong", True)


def test_a_tls_handshake_with_an_unknown_ca_raises_openssls_reason(tmp_path: Path) -> None:
    server_ctx, _ = _tls_pair(tmp_path / "a")
    _, stranger_ctx = _tls_pair(tmp_path / "b", "another CA")  # a client certificate of it

    async def scenario() -> tuple[BaseException, BaseException]:
        server, _, dialing, listener = await _dial_tls(stranger_ctx)
        with pytest.raises(Exception) as refused:
            await listener.start_tls(server_ctx, server_side=True, host=None, timeout=5.0)
        with pytest.raises(Exception) as dial_failed:
            await asyncio.wait_for(dialing, 5.0)
        server.close()
        return refused.value, dial_failed.value

    listener_error, dialer_error = asyncio.run(scenario())
    # Both CAs are strangers to each other: each side names the other's chain.
    assert isinstance(listener_error, ssl.SSLError)
    assert isinstance(dialer_error, ssl.SSLCertVerificationError)
    assert classify(dialer_error)[0] is Refusal.UNKNOWN_CA


def test_tls_records_cut_at_every_byte_arrive_whole_and_a_close_notify_ends_the_stream(
    tmp_path: Path,
) -> None:
    """Frames sent through TLS reach the other side whole and in order however the ciphertext
    is cut: whole records, several records in one chunk, one byte at a time (partial records),
    and a record larger than one read. The other side's close_notify is a clean close."""
    server_ctx, client_ctx = _tls_pair(tmp_path)
    bodies = [b"a", b"b" * (2 * peer_stream.TLS_READ_BYTES + 5), b"", b"c" * 300]

    async def scenario() -> list[tuple[str, list[bytes], bool, BaseException | None]]:
        results = []
        for cut in ("records", "all at once", "bytes"):
            listener, listener_transport = _connected()
            dialer, dialer_transport = _connected()

            async def pump(ends: list[tuple[FakeTransport, PeerStream]]) -> None:
                while True:
                    for src, dst in ends:
                        while src.written:
                            dst.data_received(src.written.pop(0))
                    await asyncio.sleep(0)

            pumping = asyncio.ensure_future(
                pump([(dialer_transport, listener), (listener_transport, dialer)])
            )
            await asyncio.gather(
                listener.start_tls(server_ctx, server_side=True, host=None, timeout=5.0),
                dialer.start_tls(client_ctx, server_side=False, host="127.0.0.1", timeout=5.0),
            )
            pumping.cancel()
            got: list[bytes] = []
            listener.start_frames(_collect(got), limit=1 << 20, tag=0)
            dialer_transport.written.clear()
            for body in bodies:
                dialer.send(frame(body))
            records = list(dialer_transport.written)
            ciphertext = b"".join(records)
            chunks = {
                "records": records,
                "all at once": [ciphertext],
                "bytes": [ciphertext[i : i + 1] for i in range(len(ciphertext))],
            }[cut]
            for chunk in chunks:
                listener.data_received(chunk)
            dialer_transport.written.clear()
            dialer.close()  # queues close_notify
            for chunk in dialer_transport.written:
                listener.data_received(chunk)
            await asyncio.sleep(0)
            results.append((cut, got, listener_transport.closing, listener.error))
        return results

    for cut, got, closed, error in asyncio.run(scenario()):
        assert got == bodies, cut
        assert closed and error is None, cut
