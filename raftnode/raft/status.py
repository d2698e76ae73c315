"""What the core shows the application: an immutable copy, never its live fields.

The runtime, the health endpoints and the metrics read a ``Status`` (etcd-io/raft's ``Status``
and ``BasicStatus``; hashicorp/raft's ``Stats``) instead of reaching into ``RaftCore``, so the
core's state stays private and each rule about it (when a learner has caught up, when the
leader was heard from) is decided in the core, once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from raftnode.raft.types import ConfState


def membership_of(node_id: int, conf: ConfState, removed: bool) -> str:
    """``Status.membership`` from its inputs (also read per request, without a ``Status``)."""
    if removed:
        return "removed"
    if node_id in conf.voters:
        return "voter"
    if node_id in conf.learners:
        return "learner"
    return "removed" if conf.members() else "not_joined"


class Role(Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class PeerProgress:
    """One peer's replication as the leader sees it (a copy of its ``Progress``)."""

    match: int
    """Highest index known to be durable on the peer."""
    next: int
    """Index of the next entry the leader sends it."""
    state: str
    """``probe``, ``replicate`` or ``snapshot``."""
    recently_active: bool
    """The leader heard from the peer within the last election timeout."""


@dataclass(frozen=True, slots=True)
class Status:
    """A snapshot of one node's Raft state, taken by ``RaftCore.status()``."""

    id: int
    role: Role
    term: int
    leader_id: int
    commit: int
    applied: int
    last_index: int
    conf: ConfState
    config_index: int
    """The log index of the configuration in force (or of the snapshot that holds it)."""
    removed: bool
    """A leader told this node it is no longer a member."""
    ticks_since_leader: int
    """Ticks since this node last heard from a leader (or granted a vote); 0 on the leader."""
    heartbeat_ticks: int
    election_ticks: int
    progress: dict[int, PeerProgress] = field(default_factory=dict)
    """Leader only: every other member's replication. Empty on other roles."""
    learners_caught_up: frozenset[int] = frozenset()
    """Leader only: learners the catch-up rule would let it promote now."""
    campaign_transfer: bool = False
    """This node campaigns, or leads after a campaign, because the leader handed leadership
    to it (TimeoutNow)."""

    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    @property
    def membership(self) -> str:
        """``voter``, ``learner``, ``removed`` (the configuration no longer lists this node, or
        a leader said so) or ``not_joined`` (no configuration yet: started to join a cluster
        and not contacted by its leader)."""
        return membership_of(self.id, self.conf, self.removed)

    def lag_of(self, peer: int) -> int | None:
        """How many entries ``peer`` is behind the leader's last index (leader only)."""
        pr = self.progress.get(peer)
        return None if pr is None else max(0, self.last_index - pr.match)

    def leader_heard_within(self, heartbeats: int) -> bool:
        """This node leads, or heard from a leader within ``heartbeats`` heartbeat intervals."""
        return self.is_leader or self.ticks_since_leader <= heartbeats * max(
            1, self.heartbeat_ticks
        )

    def leader_lost(self) -> bool:
        """A follower that has not heard from any leader for a whole election timeout."""
        return not self.is_leader and self.ticks_since_leader >= self.election_ticks

    def leader_presumed_gone(self) -> bool:
        """Raft's own verdict that the leader is gone: no leader heard for a whole election
        timeout, or this node campaigns (its election timer fired, or its link to the leader
        was lost). A few missed heartbeats are not that verdict: a leader starved of CPU or
        waiting on its disk for a moment is still leading, and answers; nor is a campaign the
        leader asked for (a transfer to this node): that leader is alive and answers."""
        campaigning = self.role in (Role.PRE_CANDIDATE, Role.CANDIDATE)
        campaigning = campaigning and not self.campaign_transfer
        return not self.is_leader and (campaigning or self.leader_lost())

    def leads_after_own_campaign(self) -> bool:
        """This node leads after an election it started itself (its timer fired), not one the
        previous leader asked for. Whatever it forwarded to that leader gets no answer: the
        old leader is deposed, and its election can go by between two looks at
        ``leader_presumed_gone`` (a campaign may take a few milliseconds)."""
        return self.is_leader and not self.campaign_transfer
