"""Every frame after a protocol-8 handshake travels in a record with a MAC over a per-direction
sequence number: a flipped bit, a replayed, reordered, dropped-then-resumed, truncated or
injected record is detected, the stream closed, one line logged and the failure counted;
messages before it are delivered, none after."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from raftnode.config import Address
from raftnode.devcluster import free_ports
from raftnode.raft.types import Message, MessageType
from raftnode.transport.auth import NO_CLUSTER, Handshake, dial_handshake
from raftnode.transport.codec import encode_message, frame
from raftnode.transport.frame_mac import (
    RECORD_TARGET_BYTES,
    TAG_BYTES,
    FrameAuthError,
    RecordOpener,
    RecordSealer,
    split_frames,
)
from raftnode.transport.peer import (
    AUTH_BAD_FRAME_MAC,
    AUTH_BAD_PROOF,
    AUTH_OLD_PROTOCOL,
    PeerTransport,
)
from tests.unit.service import peer_auth_v7

SECRET = b"s" * 32
KEY = b"k" * 32


def _msgs(n: int) -> list[bytes]:
    return [
        encode_message(Message(MessageType.HEARTBEAT, to=1, frm=2, term=1, commit=i))
        for i in range(n)
    ]


def test_sealed_records_open_in_order() -> None:
    sealer, opener = RecordSealer(KEY), RecordOpener(KEY)
    for frames in [b"", frame(b"a"), frame(b"x" * 70000) + frame(b"y")]:
        sealed = sealer.seal(frames)
        assert len(sealed) == 4 + len(frames) + TAG_BYTES
        assert opener.open(sealed[4:]) == frames


def test_a_batch_is_sealed_in_records_of_whole_frames() -> None:
    payloads = [bytes([i]) * (300 << 10) for i in range(7)]  # 2.1 MiB: three records
    sealed = RecordSealer(KEY).seal_all([frame(p) for p in payloads])
    opener, got, pos, records = RecordOpener(KEY), [], 0, 0
    while pos < len(sealed):
        length = int.from_bytes(sealed[pos : pos + 4], "big")
        assert length <= RECORD_TARGET_BYTES
        got += [
            bytes(v) for v in split_frames(opener.open(sealed[pos + 4 : pos + 4 + length + 16]))
        ]
        pos += 4 + length + TAG_BYTES
        records += 1
    assert got == payloads and records == 3


def test_a_record_cut_inside_a_frame_is_refused() -> None:
    with pytest.raises(ValueError):
        list(split_frames(frame(b"abc")[:-1]))


def _flip(sealed: bytes) -> bytes:
    b = bytearray(sealed)
    b[4 + 3] ^= 0x01  # one bit of the payload
    return bytes(b)


def _flip_tag(sealed: bytes) -> bytes:
    b = bytearray(sealed)
    b[-1] ^= 0x80
    return bytes(b)


Tamper = Callable[[list[bytes], list[bytes]], list[bytes]]
"""From the sealed frames and the plain payloads, what the attacker sends."""
CASES: dict[str, Tamper] = {
    "flip a payload bit": lambda s, p: [s[0], _flip(s[1]), s[2]],
    "flip a tag bit": lambda s, p: [s[0], _flip_tag(s[1]), s[2]],
    "replay": lambda s, p: [s[0], s[0], s[1]],
    "reorder": lambda s, p: [s[0], s[2], s[1]],
    "drop then resume": lambda s, p: [s[0], s[2]],
    "truncate": lambda s, p: [s[0], s[1][:-5], s[2]],
    "inject a frame without a MAC": lambda s, p: [s[0], frame(p[1]), s[1]],
    "inject a frame sealed under another key": lambda s, p: [
        s[0],
        RecordSealer(b"x" * 32).seal(frame(p[1])),
        s[1],
    ],
}


@pytest.mark.parametrize("case", CASES)
def test_the_opener_detects_tampering(case: str) -> None:
    sealer, opener = RecordSealer(KEY), RecordOpener(KEY)
    payloads = _msgs(3)
    sent = b"".join(CASES[case]([sealer.seal(frame(p)) for p in payloads], payloads))
    delivered = []
    pos = 0
    with pytest.raises(FrameAuthError):
        while pos < len(sent):
            length = int.from_bytes(sent[pos : pos + 4], "big")
            body = sent[pos + 4 : pos + 4 + length + TAG_BYTES]
            pos += 4 + length + TAG_BYTES
            delivered += [bytes(v) for v in split_frames(opener.open(body))]
    assert delivered == payloads[:1]


async def _dial_raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Handshake]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def write(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    shook = await dial_handshake(reader.readexactly, write, SECRET, 2, 1, NO_CLUSTER)
    return reader, writer, shook


@pytest.mark.parametrize("case", CASES)
def test_the_listener_closes_a_tampered_stream_and_counts_it(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> tuple[list[Message], list[str], bytes]:
        (port,) = free_ports(1)
        received: list[Message] = []
        failures: list[str] = []
        listener = PeerTransport(
            1, Address("127.0.0.1", port), {}, SECRET, on_auth_failure=failures.append
        )
        listener.add_peer(2, Address("127.0.0.1", 1))  # a member; its link never connects
        await listener.start(received.append)
        try:
            reader, writer, shook = await _dial_raw(port)
            assert shook.version == 8 and shook.send_key is not None
            sealer = RecordSealer(shook.send_key)
            payloads = _msgs(3)
            for chunk in CASES[case]([sealer.seal(frame(p)) for p in payloads], payloads):
                writer.write(chunk)
            await writer.drain()
            rest = await asyncio.wait_for(reader.read(), 5.0)  # b"" once the listener closes
            writer.close()
            return received, failures, rest
        finally:
            await listener.close()

    with caplog.at_level(logging.WARNING, logger="raftnode.transport.peer"):
        received, failures, rest = asyncio.run(scenario())
    assert [m.commit for m in received] == [0]
    assert failures == [AUTH_BAD_FRAME_MAC]
    assert rest == b""
    lines = [r for r in caplog.records if "failed authentication" in r.getMessage()]
    assert len(lines) == 1


def test_untampered_frames_all_arrive_between_two_transports() -> None:
    async def scenario() -> list[int]:
        pa, pb = free_ports(2)
        a_addr, b_addr = Address("127.0.0.1", pa), Address("127.0.0.1", pb)
        got: list[Message] = []
        a = PeerTransport(1, a_addr, {2: b_addr}, SECRET)
        b = PeerTransport(2, b_addr, {1: a_addr}, SECRET)
        await a.start(got.append)
        await b.start(lambda m: None)
        try:
            for _ in range(500):
                if b.connected(1):
                    break
                await asyncio.sleep(0.01)
            link = b._links[1]
            assert link.version == 8 and link.sealer is not None
            for i in range(200):
                b.send([Message(MessageType.HEARTBEAT, to=1, frm=2, term=1, commit=i)])
                if i % 17 == 0:
                    await asyncio.sleep(0)
            for _ in range(500):
                if len(got) == 200:
                    break
                await asyncio.sleep(0.01)
            return [m.commit for m in got]
        finally:
            await a.close()
            await b.close()

    assert asyncio.run(scenario()) == list(range(200))


async def _close_every_hello(port: int) -> asyncio.Server:
    """What someone on the path can do: accept and close, never answering a hello."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)


@pytest.mark.parametrize("seen_at_8", [True, False])
def test_a_closed_hello_downgrades_only_a_peer_not_seen_speaking_8(seen_at_8: bool) -> None:
    """A hello closed unanswered makes the dialer retry with the legacy hello (version 2, no
    frame MAC) only when the peer was not last seen speaking 8: else anyone on the path could
    strip the MACs between two new nodes by closing one connection."""

    async def scenario() -> float:
        pa, pb = free_ports(2)
        a_addr, b_addr = Address("127.0.0.1", pa), Address("127.0.0.1", pb)
        a = PeerTransport(1, a_addr, {2: b_addr}, SECRET)
        b = PeerTransport(2, b_addr, {1: a_addr}, SECRET)
        await a.start(lambda m: None)
        if seen_at_8:
            await b.start(lambda m: None)
            for _ in range(500):
                if a.connected(2):
                    break
                await asyncio.sleep(0.01)
            assert a.latest_versions[2] == 8
        await b.close()
        server = await _close_every_hello(pb)
        try:
            await asyncio.sleep(1.0)  # several dial attempts (backoff from 50 ms)
            return a._links[2].legacy_until
        finally:
            server.close()
            await a.close()

    legacy_until = asyncio.run(scenario())
    assert (legacy_until == 0.0) is seen_at_8


@pytest.mark.parametrize(
    ("dialer", "reason"),
    [("wrong secret", AUTH_BAD_PROOF), ("protocol 7", AUTH_OLD_PROTOCOL)],
)
def test_the_listener_counts_handshake_failures_by_reason(dialer: str, reason: str) -> None:
    """A dialer without the secret (``bad_proof``); a protocol-7 dialer refused by
    ``peer_min_protocol: 8`` (``old_protocol``)."""

    async def scenario() -> tuple[list[str], object]:
        (port,) = free_ports(1)
        failures: list[str] = []
        listener = PeerTransport(
            1,
            Address("127.0.0.1", port),
            {},
            SECRET,
            on_auth_failure=failures.append,
            min_version=8,
        )
        listener.add_peer(2, Address("127.0.0.1", 1))
        await listener.start(lambda m: None)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)

            async def write(data: bytes) -> None:
                writer.write(data)
                await writer.drain()

            dial = peer_auth_v7.dial_handshake if dialer == "protocol 7" else dial_handshake
            secret = b"w" * 32 if dialer == "wrong secret" else SECRET
            try:
                result: object = await asyncio.wait_for(
                    dial(reader.readexactly, write, secret, 2, 1, NO_CLUSTER), 5.0
                )
            except Exception as e:  # the dialer's side of the refusal
                result = e
            writer.close()
            for _ in range(200):
                if failures:
                    break
                await asyncio.sleep(0.01)
            return failures, result
        finally:
            await listener.close()

    failures, result = asyncio.run(scenario())
    assert failures == [reason]
    assert isinstance(result, Exception)


def test_a_legacy_link_to_a_peer_that_dials_in_at_8_is_dialed_again_at_8() -> None:
    """A node that fell back to the legacy hello (no frame MAC) for a peer that turns out to
    speak 8 does not keep that stream: it closes it and negotiates 8."""

    async def scenario() -> tuple[int, int]:
        pa, pb = free_ports(2)
        a_addr, b_addr = Address("127.0.0.1", pa), Address("127.0.0.1", pb)
        a = PeerTransport(1, a_addr, {2: b_addr}, SECRET)
        b = PeerTransport(2, b_addr, {}, SECRET)  # knows no peer yet: it does not dial a
        b.add_peer(1, Address("127.0.0.1", 1))  # ... but accepts it as a member
        await b.start(lambda m: None)
        await a.start(lambda m: None)
        a._links[2].legacy_until = float("inf")  # as after a hello closed unanswered
        try:
            for _ in range(500):
                if a.connected(2):
                    break
                await asyncio.sleep(0.01)
            before = a._links[2].version
            b.add_peer(1, a_addr)  # now b dials a, at 8
            for _ in range(500):
                if a._links[2].version == 8 and a.connected(2):
                    break
                await asyncio.sleep(0.01)
            return before, a._links[2].version
        finally:
            await a.close()
            await b.close()

    assert asyncio.run(scenario()) == (2, 8)
