"""The runtime's view of the network between members (hashicorp/raft's ``Transport``).

``RaftNode`` sends and receives Raft messages through this protocol only: ``PeerTransport``
carries them over authenticated TCP streams, the simulation over a simulated lossy network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from raftnode.config import Address
from raftnode.raft.types import Message

Deliver = Callable[[Message], None]
"""Called on the event loop with each message received for this node."""

PeerReachability = Callable[[int, bool], None]
"""Called on the event loop with ``(peer_id, False)`` when the peer's process is plainly gone:
the stream to it was reset or closed and reconnecting is refused (nothing listens on its
address); and with ``(peer_id, True)`` when a connection to it succeeds again after that. Not
called for silence or timeouts (a partition, a dead host): those only show as missing messages.
The runtime feeds these to ``RaftCore.report_peer_lost`` / ``report_peer_reachable``."""


class MessageCarrier(Protocol):
    """Best-effort, unordered-across-peers delivery of Raft messages; never blocks."""

    async def start(self, deliver: Deliver, reachability: PeerReachability | None = None) -> None:
        """Start listening and reaching the known peers; received messages go to ``deliver``,
        losses and recoveries of peers (see ``PeerReachability``) to ``reachability``."""
        ...

    def send(self, messages: Iterable[Message]) -> None:
        """Queue messages for their peers; drops what cannot be delivered."""
        ...

    def add_peer(self, peer_id: int, address: Address) -> None: ...

    def remove_peer(self, peer_id: int) -> None: ...

    def connected(self, peer_id: int) -> bool:
        """Whether a stream to ``peer_id`` is up right now."""
        ...

    def peer_version(self, peer_id: int) -> int:
        """The peer protocol version ``peer_id`` is known to speak: the higher of those
        negotiated on the latest stream each way (kept after a stream ends); 0 when none was
        ever up."""
        ...

    def set_cluster_id(self, cluster_id: bytes, learned: Callable[[bytes], None]) -> None:
        """Peers of another cluster are refused; a node without one (all zeros) learns it from
        its first authenticated peer and reports it to ``learned``."""
        ...

    async def close(self) -> None: ...
