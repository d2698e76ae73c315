"""The errors a request can get from the node (``raftnode.node`` re-exports them)."""

from __future__ import annotations


class NodeError(Exception):
    """Base class of the errors a request can get from the node."""


class NotLeader(NodeError):
    """This node cannot take the write; ``leader_id`` is the leader to ask (0 when unknown)."""

    def __init__(self, leader_id: int) -> None:
        super().__init__(f"not the leader (leader: {leader_id or 'unknown'})")
        self.leader_id = leader_id


class Unavailable(NodeError):
    """No leader, no quorum, or the node is shutting down: nothing was done, retry later."""


class OutcomeUnknown(NodeError):
    """The write was proposed but its fate is not known within the deadline (it may apply)."""
