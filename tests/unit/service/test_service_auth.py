"""HMAC handshake: same secret connects both ways; wrong secret, wrong ids, garbage do not; the
peer protocol version is negotiated, old releases are still spoken to, and no range meets is a
clear refusal on both sides."""

from __future__ import annotations

import asyncio
import struct

import pytest

from raftnode.transport.auth import (
    MAX_VERSION,
    NO_CLUSTER,
    AuthError,
    Handshake,
    LegacyListenerSuspected,
    VersionMismatch,
    accept_handshake,
    dial_handshake,
)

SECRET = b"s" * 32


class Pipe:
    """An in-memory, one-direction byte stream with read_exactly/write like an IOStream."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.event = asyncio.Event()
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.event.set()

    async def write(self, data: bytes) -> None:
        self.buf += data
        self.event.set()

    async def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if self.closed:
                raise asyncio.IncompleteReadError(bytes(self.buf), n)
            self.event.clear()
            await asyncio.wait_for(self.event.wait(), 1.0)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


CLUSTER_A = bytes.fromhex("aa" * 16)
CLUSTER_B = bytes.fromhex("bb" * 16)


async def run(
    dial_secret: bytes,
    accept_secret: bytes,
    my_id: int = 2,
    target: int = 1,
    members=(1, 2, 3),
    dial_cluster: bytes = CLUSTER_A,
    accept_cluster: bytes = CLUSTER_A,
    legacy: bool = False,
):
    a_to_b, b_to_a = Pipe(), Pipe()
    dialer = dial_handshake(
        b_to_a.read_exactly, a_to_b.write, dial_secret, my_id, target, dial_cluster, legacy=legacy
    )

    async def listener() -> Handshake:
        try:
            return await accept_handshake(
                a_to_b.read_exactly, b_to_a.write, accept_secret, 1, set(members), accept_cluster
            )
        finally:
            b_to_a.close()  # as the transport closes the stream

    results = await asyncio.gather(dialer, listener(), return_exceptions=True)
    return [_summary(r) for r in results]


def _summary(result: object) -> object:
    """A dialer's ``(cluster id, version)``, a listener's ``(dialer id, cluster id, version)``
    (the shape of the assertions below), or the exception."""
    if not isinstance(result, Handshake):
        return result
    if result.peer_id == 1:  # the dialer's view of the listener, node 1
        return (result.cluster_id, result.version)
    return (result.peer_id, result.cluster_id, result.version)


def test_same_secret_authenticates_both_sides() -> None:
    d, accepted = asyncio.run(run(SECRET, SECRET))
    assert d == (CLUSTER_A, MAX_VERSION)
    assert accepted == (2, CLUSTER_A, MAX_VERSION)


def test_a_node_of_another_cluster_is_refused_naming_both_ids() -> None:
    d, accepted = asyncio.run(run(SECRET, SECRET, accept_cluster=CLUSTER_B))
    assert isinstance(d, AuthError)
    assert CLUSTER_A.hex() in str(d) and CLUSTER_B.hex() in str(d)
    assert isinstance(accepted, (AuthError, TimeoutError))


def test_a_joining_node_learns_the_cluster_id_from_its_first_peer() -> None:
    d, accepted = asyncio.run(run(SECRET, SECRET, dial_cluster=NO_CLUSTER))
    assert d == (CLUSTER_A, MAX_VERSION) and accepted == (2, NO_CLUSTER, MAX_VERSION)
    d, accepted = asyncio.run(run(SECRET, SECRET, accept_cluster=NO_CLUSTER))
    assert d == (NO_CLUSTER, MAX_VERSION) and accepted == (2, CLUSTER_A, MAX_VERSION)


def test_wrong_secret_fails_on_both_sides() -> None:
    d, accepted = asyncio.run(run(b"x" * 32, SECRET))
    assert isinstance(d, AuthError)  # the dialer sees the listener's proof does not match
    assert isinstance(accepted, (AuthError, TimeoutError))


def test_unknown_node_id_refused() -> None:
    _d, accepted = asyncio.run(run(SECRET, SECRET, my_id=9))
    assert isinstance(accepted, AuthError)
    assert "not a member" in str(accepted)


def test_dialing_the_wrong_node_refused() -> None:
    _, accepted = asyncio.run(run(SECRET, SECRET, target=3))
    assert isinstance(accepted, AuthError)


def test_garbage_refused() -> None:
    async def go() -> tuple[object, ...]:
        pipe, back = Pipe(), Pipe()
        await pipe.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\0" * 64)
        return await asyncio.gather(
            accept_handshake(pipe.read_exactly, back.write, SECRET, 1, {1, 2, 3}),
            return_exceptions=True,
        )

    (res,) = asyncio.run(go())
    assert isinstance(res, AuthError)


def test_replayed_dialer_proof_fails() -> None:
    """A recorded dialer answer is useless against a fresh listener nonce."""

    async def replay() -> object:
        # Record a full session's dialer bytes, then replay them to a new listener.
        rec = Pipe()
        sent = bytearray()
        orig = rec.write

        async def tap(data: bytes) -> None:
            sent.extend(data)
            await orig(data)

        back = Pipe()
        await asyncio.gather(
            dial_handshake(back.read_exactly, tap, SECRET, 2, 1),
            accept_handshake(rec.read_exactly, back.write, SECRET, 1, {1, 2}),
        )
        replayed, sink = Pipe(), Pipe()
        await replayed.write(bytes(sent))
        return (
            await asyncio.gather(
                accept_handshake(replayed.read_exactly, sink.write, SECRET, 1, {1, 2}),
                return_exceptions=True,
            )
        )[0]

    with pytest.raises(AuthError):
        raise asyncio.run(replay())  # type: ignore[misc]


def test_a_release_before_negotiation_is_spoken_to_with_version_2() -> None:
    d, accepted = asyncio.run(run(SECRET, SECRET, legacy=True))
    assert d == (CLUSTER_A, 2) and accepted == (2, CLUSTER_A, 2)


def test_an_old_listener_closing_a_negotiating_hello_asks_for_the_legacy_hello() -> None:
    async def go() -> object:
        to_old, back = Pipe(), Pipe()

        async def old_listener() -> None:
            hello = await to_old.read_exactly(74)  # what a release before negotiation reads
            assert hello[:10] == b"RAFTNODE/N"  # not its magic: it closes
            back.close()

        results = await asyncio.gather(
            dial_handshake(back.read_exactly, to_old.write, SECRET, 2, 1, CLUSTER_A),
            old_listener(),
            return_exceptions=True,
        )
        return results[0]

    assert isinstance(asyncio.run(go()), LegacyListenerSuspected)


@pytest.mark.parametrize(("lo", "hi"), [(MAX_VERSION + 1, MAX_VERSION + 2), (1, 1)])
def test_a_dialer_with_no_common_version_is_told_and_refused(lo: int, hi: int) -> None:
    async def go() -> tuple[object, bytes]:
        to_listener, back = Pipe(), Pipe()
        hello = b"RAFTNODE/N" + bytes([lo, hi]) + struct.pack(">QQ", 2, 1) + b"n" * 32 + CLUSTER_A
        await to_listener.write(hello)
        (accepted,) = await asyncio.gather(
            accept_handshake(to_listener.read_exactly, back.write, SECRET, 1, {1, 2}, CLUSTER_A),
            return_exceptions=True,
        )
        return accepted, bytes(back.buf)

    accepted, answer = asyncio.run(go())
    assert isinstance(accepted, VersionMismatch)
    assert f"versions {lo}..{hi}" in str(accepted) and f"this node 2..{MAX_VERSION}" in str(
        accepted
    )
    assert answer == bytes(
        [0, 2, MAX_VERSION]
    )  # refused, with the listener's own range; nothing else


def test_a_listener_with_no_common_version_is_named_by_the_dialer() -> None:
    async def go() -> object:
        to_listener, back = Pipe(), Pipe()
        await back.write(bytes([0, MAX_VERSION + 1, MAX_VERSION + 2]))
        (dialed,) = await asyncio.gather(
            dial_handshake(back.read_exactly, to_listener.write, SECRET, 2, 1, CLUSTER_A),
            return_exceptions=True,
        )
        return dialed

    dialed = asyncio.run(go())
    assert isinstance(dialed, VersionMismatch)
    hi = MAX_VERSION
    assert f"speaks peer protocol versions {hi + 1}..{hi + 2}, this node 2..{hi}" in str(dialed)


def test_the_offered_range_is_inside_the_macs() -> None:
    """Someone on the path who narrows the offer (a downgrade) breaks the authentication."""

    async def go() -> list[object]:
        a_to_b, b_to_a, tampered = Pipe(), Pipe(), Pipe()

        async def middle() -> None:
            hello = bytearray(await a_to_b.read_exactly(76))
            hello[11] = 2  # hi 3 -> 2
            await tampered.write(bytes(hello))
            while True:
                await tampered.write(await a_to_b.read_exactly(1))

        relay = asyncio.ensure_future(middle())
        try:
            return list(
                await asyncio.gather(
                    dial_handshake(b_to_a.read_exactly, a_to_b.write, SECRET, 2, 1),
                    accept_handshake(tampered.read_exactly, b_to_a.write, SECRET, 1, {1, 2}),
                    return_exceptions=True,
                )
            )
        finally:
            relay.cancel()

    d, accepted = asyncio.run(go())
    assert isinstance(d, AuthError) and "failed authentication" in str(d)
    assert not isinstance(accepted, tuple)
