"""How fresh a read must be: the ``?consistency=`` values of the client API and
``RaftNode.read_barrier``'s argument (a ``str`` enum, so the wire values stay as they are)."""

from __future__ import annotations

from enum import StrEnum


class Consistency(StrEnum):
    LINEARIZABLE = "linearizable"
    """ReadIndex: the leader confirms it still leads, the read waits for that index to apply."""
    LEASE = "lease"
    """The leader's lease stands in for the confirmation round trip (bounded clock drift)."""
    STALE = "stale"
    """The local state as it is, however far behind."""
