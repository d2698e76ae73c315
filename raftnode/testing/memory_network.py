"""An in-memory network between nodes on one event loop, for tests: never use it in production.

``MemoryNetwork`` delivers each message after a delay (``latency`` seconds, on the event loop:
on a ``VirtualTimeLoop`` no wall-clock time), drops what crosses a cut link, and tells nodes what
``PeerTransport`` would tell them: a node whose peer crashed (``detach``) hears "peer lost"
after the last message already on its way from it, and "reachable" once the peer is back
(``attach``). A cut link (``cut``, ``isolate``, ``partition``) just drops messages, as a silent
network partition does. ``MemoryCarrier`` is one node's ``MessageCarrier`` on it.

A test that needs a harsher network subclasses ``MemoryNetwork``: ``_dropped``, ``_copies`` and
``_delay`` decide each message's fate, ``_reconnect_delay`` and ``_loss_delay`` when peers hear of
a restart or a crash, ``_hand_over`` delivers (and may watch) each message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from raftnode.config import Address
from raftnode.raft import Message
from raftnode.transport.auth import MAX_VERSION
from raftnode.transport.carrier import Deliver, PeerReachability


class MemoryNetwork:
    """Messages in flight between the nodes attached, on the running event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, latency: float = 0.001) -> None:
        if latency < 0:
            raise ValueError(f"latency must not be negative, not {latency}")
        self.loop = loop
        self.latency = latency
        self.receivers: dict[int, Deliver] = {}
        self.reachability: dict[int, PeerReachability] = {}
        self.cut: set[frozenset[int]] = set()
        """Links that drop everything (pairs of node ids)."""
        self.last_delivery: dict[tuple[int, int], float] = {}
        self.versions: dict[int, int] = {}
        """Peer protocol versions of nodes that speak an older one (the rest: this release's),
        to test what a mixed-version cluster may propose."""

    def carrier(self, node_id: int) -> MemoryCarrier:
        """A ``MessageCarrier`` for node ``node_id`` on this network."""
        return MemoryCarrier(self, node_id)

    # -- nodes come and go -----------------------------------------------------------------

    def attach(
        self, node_id: int, deliver: Deliver, reachability: PeerReachability | None = None
    ) -> None:
        """Node ``node_id`` (re)started: messages for it go to ``deliver`` from now on."""
        self.receivers[node_id] = deliver
        if reachability is not None:
            self.reachability[node_id] = reachability
        for other in list(self.receivers):
            if other != node_id:
                # The others' reconnects to the restarted node succeed.
                self.report(other, node_id, True, self._reconnect_delay())

    def detach(self, node_id: int) -> None:
        """Node ``node_id`` is gone (crashed or stopped): nothing reaches it any more."""
        self.receivers.pop(node_id, None)
        self.reachability.pop(node_id, None)
        for other in list(self.receivers):
            if other != node_id and not self.blocked(node_id, other):
                # Its streams are reset and reconnects refused: after whatever it sent last.
                after = max(0.0, self.last_delivery.get((node_id, other), 0.0) - self.now())
                self.report(other, node_id, False, after + self._loss_delay())

    def now(self) -> float:
        return self.loop.time()

    def report(self, to: int, peer: int, reachable: bool, delay: float) -> None:
        """Tell node ``to`` (the runtime attached now) that ``peer`` was lost or is back."""
        callback = self.reachability.get(to)
        if callback is None:
            return

        def fire() -> None:
            if self.reachability.get(to) is not callback:
                return  # ``to`` crashed (or restarted) in between
            if self.blocked(to, peer) or reachable != (peer in self.receivers):
                return  # overtaken by events: the peer came back, died again, or was cut off
            self._reporting(to, peer, reachable)
            callback(peer, reachable)

        self.loop.call_later(delay, fire)

    # -- partitions ------------------------------------------------------------------------

    def cut_link(self, a: int, b: int) -> None:
        """Drop everything between ``a`` and ``b`` until ``heal``."""
        if a == b:
            raise ValueError(f"a link joins two nodes, not n{a} to itself")
        self.cut.add(frozenset((a, b)))

    def isolate(self, node_id: int, others: Iterable[int]) -> None:
        """Cut every link between ``node_id`` and ``others``."""
        for other in others:
            if other != node_id:
                self.cut_link(node_id, other)

    def partition(self, *groups: Iterable[int]) -> None:
        """Cut every link between nodes of different groups (links within a group stay)."""
        sets = [set(g) for g in groups]
        for i, group in enumerate(sets):
            for other in sets[i + 1 :]:
                overlap = group & other
                if overlap:
                    raise ValueError(f"nodes {sorted(overlap)} are in two groups")
                for a in group:
                    for b in other:
                        self.cut_link(a, b)

    def heal(self) -> None:
        """Every cut link passes messages again."""
        self.cut.clear()

    def blocked(self, a: int, b: int) -> bool:
        return frozenset((a, b)) in self.cut

    def reachable(self, a: int, b: int) -> bool:
        return b in self.receivers and not self.blocked(a, b)

    # -- messages --------------------------------------------------------------------------

    def send(self, m: Message) -> None:
        if self.blocked(m.frm, m.to) or self._dropped(m):
            return
        for _ in range(self._copies(m)):
            delay = self._delay(m)
            key = (m.frm, m.to)
            self.last_delivery[key] = max(self.last_delivery.get(key, 0.0), self.now() + delay)
            self.loop.call_later(delay, self._deliver, m)

    def _deliver(self, m: Message) -> None:
        receiver = self.receivers.get(m.to)
        if receiver is None or self.blocked(m.frm, m.to):
            return
        self._hand_over(m, receiver)

    # -- what a harsher network overrides --------------------------------------------------

    def _dropped(self, m: Message) -> bool:
        """Whether ``m`` is lost on the way (a cut link is checked before)."""
        return False

    def _copies(self, m: Message) -> int:
        """How many copies of ``m`` arrive."""
        return 1

    def _delay(self, m: Message) -> float:
        """Seconds until a copy of ``m`` arrives."""
        return self.latency

    def _reconnect_delay(self) -> float:
        """Seconds until a node hears that a restarted peer is reachable."""
        return self.latency

    def _loss_delay(self) -> float:
        """Seconds until a node hears a crashed peer is lost, after its last message."""
        return self.latency

    def _hand_over(self, m: Message, receiver: Deliver) -> None:
        receiver(m)

    def _reporting(self, to: int, peer: int, reachable: bool) -> None:
        """Node ``to`` is about to hear that ``peer`` is lost or reachable."""


class MemoryCarrier:
    """One node's ``MessageCarrier`` on a ``MemoryNetwork``: every node is reachable by id."""

    def __init__(self, network: MemoryNetwork, node_id: int) -> None:
        self.network = network
        self.node_id = node_id
        self.closed = False
        self._deliver: Deliver | None = None

    async def start(self, deliver: Deliver, reachability: PeerReachability | None = None) -> None:
        self._deliver = deliver
        self.network.attach(self.node_id, deliver, reachability)

    def send(self, messages: Iterable[Message]) -> None:
        if self.closed:
            return
        for m in messages:
            self.network.send(m)

    def add_peer(self, peer_id: int, address: Address) -> None:
        return None  # every node on the network is reachable by id

    def remove_peer(self, peer_id: int) -> None:
        return None

    def connected(self, peer_id: int) -> bool:
        return self.network.reachable(self.node_id, peer_id)

    def peer_version(self, peer_id: int) -> int:
        mine = self.network.versions.get(self.node_id, MAX_VERSION)
        return min(mine, self.network.versions.get(peer_id, MAX_VERSION))

    def set_cluster_id(self, cluster_id: bytes, learned: Callable[[bytes], None]) -> None:
        return None  # one cluster per network: nothing to tell apart

    async def close(self) -> None:
        """Stop sending; leave the network unless a newer carrier of the node took over."""
        self.closed = True
        if self._deliver is not None and self.network.receivers.get(self.node_id) is self._deliver:
            self.network.detach(self.node_id)
