"""Peer protocol 8: the dialer proves itself first (the listener sends nothing derived from the
secret before that proof verified), both sides derive per-direction frame keys, a protocol-7
peer is still spoken to, and ``min_version`` (``peer_min_protocol``) refuses older peers."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable

import pytest

from raftnode.transport import auth
from raftnode.transport.auth import (
    MAC_VERSION,
    MAX_VERSION,
    NEGOTIATE_MAGIC,
    AuthError,
    Handshake,
    ProofFailed,
    VersionMismatch,
    accept_handshake,
    dial_handshake,
)
from tests.unit.service import peer_auth_v7
from tests.unit.service.test_service_auth import CLUSTER_A, SECRET, Pipe

OTHER = b"o" * 32
Dial = Callable[..., Awaitable[object]]
Accept = Callable[..., Awaitable[object]]


async def _pair(
    dial: Dial = dial_handshake,
    accept: Accept = accept_handshake,
    *,
    dial_secret: bytes = SECRET,
    accept_secret: bytes = SECRET,
    dial_kw: dict[str, int] | None = None,
    accept_kw: dict[str, int] | None = None,
) -> tuple[object, object, bytes]:
    """Dialer node 2 against listener node 1; both results and every byte the listener sent.
    Each side's stream closes when it ends, as the transport's does."""
    to_l, to_d = Pipe(), Pipe()
    sent = bytearray()
    write_d = to_d.write

    async def tap(data: bytes) -> None:
        sent.extend(data)
        await write_d(data)

    async def dialer() -> object:
        try:
            return await dial(
                to_d.read_exactly, to_l.write, dial_secret, 2, 1, CLUSTER_A, **(dial_kw or {})
            )
        finally:
            to_l.close()

    async def listener() -> object:
        try:
            return await accept(
                to_l.read_exactly, tap, accept_secret, 1, {1, 2, 3}, CLUSTER_A, **(accept_kw or {})
            )
        finally:
            to_d.close()

    d, a = await asyncio.gather(dialer(), listener(), return_exceptions=True)
    return d, a, bytes(sent)


def test_version_8_agrees_on_keys_one_per_direction() -> None:
    d, a, _ = asyncio.run(_pair())
    assert isinstance(d, Handshake) and isinstance(a, Handshake)
    assert d.version == a.version == MAC_VERSION == MAX_VERSION
    assert d.send_key is not None and d.receive_key is not None
    assert d.send_key == a.receive_key and d.receive_key == a.send_key
    assert d.send_key != d.receive_key
    d2, _, _ = asyncio.run(_pair())
    assert isinstance(d2, Handshake) and d2.send_key != d.send_key  # fresh per connection


def test_the_listener_sends_nothing_derived_from_the_secret_before_the_dialer_proves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the nonces fixed, the listener's bytes to a dialer that fails its proof are the
    same whatever the listener's secret is: nothing in them depends on it."""
    monkeypatch.setattr(auth.secrets, "token_bytes", lambda n: b"\x07" * n)
    answers = []
    for secret in (SECRET, OTHER):
        d, a, sent = asyncio.run(_pair(dial_secret=b"wrong secret" * 3, accept_secret=secret))
        assert isinstance(a, ProofFailed) and "failed authentication" in str(a)
        assert isinstance(d, ProofFailed) and "refused this node's proof" in str(d)
        # version head, listener id, nonce, cluster id: no MAC
        assert len(sent) == 3 + 8 + 32 + 16
        assert sent[:3] == bytes([MAC_VERSION, 2, MAX_VERSION])
        assert sent[-16:] == CLUSTER_A
        answers.append(sent)
    assert answers[0] == answers[1]


@pytest.mark.parametrize("wrong", ["dialer", "listener"])
def test_a_wrong_secret_on_either_side_fails_both(wrong: str) -> None:
    kw = {"dial_secret": OTHER} if wrong == "dialer" else {"accept_secret": OTHER}
    d, a, sent = asyncio.run(_pair(**kw))  # type: ignore[arg-type]
    assert isinstance(a, ProofFailed)
    assert isinstance(d, ProofFailed)
    assert len(sent) == 3 + 8 + 32 + 16  # the listener never sent its proof


def test_a_dialer_that_only_says_hello_learns_nothing() -> None:
    """No proof at all: the listener waits (bounded by the transport's handshake timeout)
    having sent only its nonce."""

    async def go() -> bytes:
        to_l, back = Pipe(), Pipe()
        hello = NEGOTIATE_MAGIC + bytes([2, 8]) + struct.pack(">QQ", 2, 1) + b"n" * 32 + CLUSTER_A
        await to_l.write(hello)
        listener = asyncio.ensure_future(
            accept_handshake(to_l.read_exactly, back.write, SECRET, 1, {1, 2}, CLUSTER_A)
        )
        await asyncio.sleep(0.1)
        to_l.close()
        with pytest.raises(asyncio.IncompleteReadError):
            await listener
        return bytes(back.buf)

    assert len(asyncio.run(go())) == 3 + 8 + 32 + 16


def test_a_protocol_7_listener_is_spoken_to_at_7_without_frame_keys() -> None:
    d, a, _ = asyncio.run(_pair(accept=peer_auth_v7.accept_handshake))
    assert isinstance(d, Handshake) and d.version == 7 and d.send_key is None
    assert a == (2, CLUSTER_A, 7)


def test_a_protocol_7_dialer_is_accepted_at_7_without_frame_keys() -> None:
    d, a, _ = asyncio.run(_pair(dial=peer_auth_v7.dial_handshake))
    assert d == (CLUSTER_A, 7)
    assert isinstance(a, Handshake) and a.version == 7 and a.receive_key is None


def test_peer_min_protocol_8_refuses_a_protocol_7_dialer_without_a_mac() -> None:
    d, a, sent = asyncio.run(
        _pair(dial=peer_auth_v7.dial_handshake, accept_kw={"min_version": MAC_VERSION})
    )
    assert isinstance(a, VersionMismatch) and "peer_min_protocol: 8" in str(a)
    assert isinstance(d, peer_auth_v7.VersionMismatch)
    assert sent == bytes([0, MAC_VERSION, MAX_VERSION])  # refused, nothing else


def test_peer_min_protocol_8_closes_a_legacy_hello_unanswered() -> None:
    d, a, sent = asyncio.run(
        _pair(
            dial=peer_auth_v7.dial_handshake,
            dial_kw={"legacy": True},
            accept_kw={"min_version": MAC_VERSION},
        )
    )
    assert isinstance(a, VersionMismatch)
    assert isinstance(d, asyncio.IncompleteReadError)  # a close, as for a bad magic
    assert sent == b""


def test_peer_min_protocol_8_dialer_offers_only_8_and_never_the_legacy_hello() -> None:
    d, a, _ = asyncio.run(
        _pair(accept=peer_auth_v7.accept_handshake, dial_kw={"min_version": MAC_VERSION})
    )
    assert isinstance(d, VersionMismatch) and "versions 2..7" in str(d)
    assert isinstance(a, peer_auth_v7.VersionMismatch)

    async def legacy() -> object:
        pipe = Pipe()
        return await dial_handshake(
            pipe.read_exactly, pipe.write, SECRET, 2, 1, legacy=True, min_version=MAC_VERSION
        )

    with pytest.raises(VersionMismatch):
        asyncio.run(legacy())


def test_a_downgrade_on_the_path_between_two_version_8_nodes_fails() -> None:
    """Someone rewrites the dialer's offer to 2..7 to get the listener's MAC first: the
    listener does answer (it still speaks 7), but the handshake fails on both sides."""

    async def go() -> list[object]:
        to_l, to_d, rewritten = Pipe(), Pipe(), Pipe()

        async def middle() -> None:
            hello = bytearray(await to_l.read_exactly(76))
            hello[11] = 7
            await rewritten.write(bytes(hello))
            while True:
                await rewritten.write(await to_l.read_exactly(1))

        relay = asyncio.ensure_future(middle())

        async def listener() -> object:
            try:
                return await accept_handshake(
                    rewritten.read_exactly, to_d.write, SECRET, 1, {1, 2}, CLUSTER_A
                )
            finally:
                to_d.close()

        try:
            return list(
                await asyncio.gather(
                    dial_handshake(to_d.read_exactly, to_l.write, SECRET, 2, 1, CLUSTER_A),
                    listener(),
                    return_exceptions=True,
                )
            )
        finally:
            relay.cancel()

    d, a = asyncio.run(go())
    assert isinstance(d, ProofFailed)
    assert isinstance(a, (AuthError, TimeoutError, asyncio.IncompleteReadError))
