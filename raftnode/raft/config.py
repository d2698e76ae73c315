"""Tunables of the consensus core."""

from __future__ import annotations

from dataclasses import dataclass

from raftnode.defaults import Timing

_TIMING = Timing()


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Timing is in ticks: the runtime calls ``RaftCore.tick`` every ``tick_seconds``.

    The leader lease lasts ``election_ticks * tick_seconds * (1 - lease_drift)`` from the moment a
    heartbeat round was sent: followers refuse votes for a full election timeout after hearing from
    the leader, and ``lease_drift`` is the margin for clocks running at different rates.

    With ``fast_leader_loss`` (see ``RaftCore.report_peer_lost``) a follower whose link to its
    leader was reported lost may vote ``leader_loss_quiet_ticks`` after it last heard from the
    leader instead of a full election timeout, so the lease shrinks to that quiet period (see
    ``lease_seconds``).
    """

    node_id: int
    election_ticks: int = _TIMING.election_ticks
    heartbeat_ticks: int = _TIMING.heartbeat_ticks
    max_inflight: int = 256
    max_batch_entries: int = 512
    max_batch_bytes: int = 1 << 20
    snapshot_chunk_bytes: int = 1 << 20
    compaction_retain: int = 1000
    learner_catchup_entries: int = 1000
    check_quorum: bool = True
    pre_vote: bool = True
    tick_seconds: float = _TIMING.tick_seconds
    lease_drift: float = 0.1
    fast_leader_loss: bool = True
    leader_loss_quiet_ticks: int = 2

    def __post_init__(self) -> None:
        if self.node_id <= 0:
            raise ValueError(f"node_id must be a positive integer, got {self.node_id}")
        if self.heartbeat_ticks <= 0:
            raise ValueError("heartbeat_ticks must be positive")
        if self.election_ticks <= self.heartbeat_ticks:
            raise ValueError("election_ticks must be greater than heartbeat_ticks")
        if self.max_inflight <= 0 or self.max_batch_entries <= 0 or self.max_batch_bytes <= 0:
            raise ValueError("max_inflight, max_batch_entries and max_batch_bytes must be positive")
        if self.snapshot_chunk_bytes <= 0:
            raise ValueError("snapshot_chunk_bytes must be positive")
        if not 0.0 <= self.lease_drift < 1.0:
            raise ValueError("lease_drift must be in [0, 1)")
        if not 0 < self.leader_loss_quiet_ticks < self.election_ticks:
            raise ValueError("leader_loss_quiet_ticks must be positive and below election_ticks")

    @property
    def leader_loss_quiet_seconds(self) -> float:
        """How long a voter must not have heard from its leader before it grants a vote on the
        fast leader-loss path (despite leader stickiness)."""
        return self.leader_loss_quiet_ticks * self.tick_seconds

    @property
    def lease_seconds(self) -> float:
        """How long after sending a heartbeat round the leader may serve reads without a quorum
        round, once a majority acknowledged that round: less than the shortest time after which
        any acknowledging voter may vote for somebody else (measured on a clock that may run
        ``lease_drift`` slower or faster)."""
        no_vote_for = self.election_ticks * self.tick_seconds
        if self.fast_leader_loss and self.check_quorum:
            no_vote_for = min(no_vote_for, self.leader_loss_quiet_seconds)
        return no_vote_for * (1.0 - self.lease_drift)
