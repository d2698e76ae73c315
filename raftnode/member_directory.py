"""Where each member can be reached, kept up to date as membership changes apply.

The initial members come from the node's options; every applied ``ConfChange`` that adds a node
carries its peer address in ``context["peer"]``. The directory tells the carrier (open or close
a peer link), keeps a removed member's link a little longer so it can still be told it was
removed, and calls the application's membership listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Mapping

from raftnode.config import Address
from raftnode.metrics import NodeMetrics
from raftnode.raft.confchange import check_addresses_unused
from raftnode.raft.types import ConfChange
from raftnode.transport.carrier import MessageCarrier

log = logging.getLogger("raftnode.node")

REMOVED_PEER_LINGER_SECONDS = 30.0
"""How long a removed member's link stays open, so it can be told it was removed."""

ConfListener = Callable[[ConfChange], None]


class MemberDirectory:
    def __init__(
        self,
        node_id: int,
        initial: Mapping[int, Address],
        carrier: MessageCarrier,
        metrics: NodeMetrics,
    ) -> None:
        self.node_id = node_id
        self.peers: dict[int, Address] = dict(initial)
        """Every member's peer address as this node knows it."""
        self.carrier = carrier
        self.metrics = metrics
        self._listeners: list[ConfListener] = []

    def add_listener(self, listener: ConfListener) -> Callable[[], None]:
        """Call ``listener`` with each change as it applies; returns the call that removes it."""
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def check_peer_address_free(
        self, node_id: int, context: Mapping[str, str], members: Collection[int]
    ) -> None:
        """Refuse (``ConfChangeError``) adding ``node_id`` at a peer address a member uses."""
        peer = context.get("peer")
        if not peer:
            return
        in_use = {m: {"peer": str(a)} for m, a in self.peers.items() if m in members}
        check_addresses_unused(node_id, {"peer": str(Address.parse(peer))}, in_use)

    def apply(self, change: ConfChange, is_member: Callable[[int], bool]) -> None:
        """A membership change applied here. ``is_member`` answers for the configuration in
        force later (when a removed member's lingering link is finally closed)."""
        addr = change.context.get("peer")
        if addr and change.node_id in change.result.members():
            self.peers[change.node_id] = Address.parse(addr)
            if change.node_id != self.node_id:
                self.carrier.add_peer(change.node_id, Address.parse(addr))
        if change.node_id and change.node_id not in change.result.members():
            self.peers.pop(change.node_id, None)
            # Keep the link a while: the leader tells the removed node (REMOVED) when it next
            # hears from it, which it will if it missed the entry that removed it.
            asyncio.get_running_loop().call_later(
                REMOVED_PEER_LINGER_SECONDS, self._forget, change.node_id, is_member
            )
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                log.exception("membership listener failed")
        log.info(
            "configuration applied",
            extra={
                "fields": {
                    "op": change.op.name.lower(),
                    "node_id": change.node_id,
                    **change.result.to_json(),
                }
            },
        )

    def _forget(self, node_id: int, is_member: Callable[[int], bool]) -> None:
        if not is_member(node_id):
            self.carrier.remove_peer(node_id)
            self.metrics.forget_peer(node_id)
