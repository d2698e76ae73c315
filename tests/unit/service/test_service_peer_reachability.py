"""PeerTransport reports a peer lost when its stream ends and reconnecting is refused (the
peer's process is gone), and reachable again once a connection succeeds: the input of the
core's fast leader-loss detection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from raftnode.config import Address
from raftnode.devcluster import free_ports
from raftnode.raft import Message
from raftnode.transport import peer as peer_module
from raftnode.transport.peer import PeerTransport

SECRET = b"s" * 32


def _ignore(message: Message) -> None:
    return None


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def test_peer_lost_when_stream_ends_and_reconnect_refused_then_reachable() -> None:
    async def scenario() -> list[tuple[int, bool]]:
        pa, pb = free_ports(2)
        a_addr, b_addr = Address("127.0.0.1", pa), Address("127.0.0.1", pb)
        events: list[tuple[int, bool]] = []
        a = PeerTransport(1, a_addr, {2: b_addr}, SECRET)
        b = PeerTransport(2, b_addr, {1: a_addr}, SECRET)
        await b.start(_ignore)
        await a.start(_ignore, lambda peer, reachable: events.append((peer, reachable)))
        try:
            await _until(lambda: a.connected(2))
            assert events == [], "a first connection is not news"
            await b.close()  # the peer's process goes away: stream closed, port refuses
            await _until(lambda: bool(events))
            assert events == [(2, False)]
            b = PeerTransport(2, b_addr, {1: a_addr}, SECRET)
            await b.start(_ignore)
            await _until(lambda: len(events) == 2)
            assert events == [(2, False), (2, True)]
        finally:
            await a.close()
            await b.close()
        return events

    asyncio.run(scenario())


def test_peer_never_reached_is_not_reported_lost() -> None:
    # Nothing listens yet (a node starting before its peers): refusals without a stream that
    # ended say nothing about a process having died.
    async def scenario() -> list[tuple[int, bool]]:
        pa, pb = free_ports(2)
        events: list[tuple[int, bool]] = []
        a = PeerTransport(1, Address("127.0.0.1", pa), {2: Address("127.0.0.1", pb)}, SECRET)
        await a.start(_ignore, lambda peer, reachable: events.append((peer, reachable)))
        await asyncio.sleep(0.3)
        await a.close()
        return events

    assert asyncio.run(scenario()) == []


def test_a_peer_dialing_in_ends_our_reconnect_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    # A restarted peer dials us at once; our link to it must not sit out its backoff (up to
    # seconds): until it reconnects, our answers to that peer (its votes!) are dropped.
    monkeypatch.setattr(peer_module, "BACKOFF_MIN", 60.0)

    async def scenario() -> None:
        pa, pb = free_ports(2)
        a_addr, b_addr = Address("127.0.0.1", pa), Address("127.0.0.1", pb)
        a = PeerTransport(1, a_addr, {2: b_addr}, SECRET)
        await a.start(_ignore)  # b is down: a's first dial fails, then backs off for a minute
        await asyncio.sleep(0.2)
        b = PeerTransport(2, b_addr, {1: a_addr}, SECRET)
        await b.start(_ignore)
        try:
            await _until(lambda: a.connected(2))
        finally:
            await a.close()
            await b.close()

    asyncio.run(scenario())
