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
    """This node's id: positive, unique in the cluster, never reused for another node."""
    election_ticks: int = _TIMING.election_ticks
    """Election timeout in ticks; each follower waits a random time in ``[e, 2e)`` without
    hearing from a leader before it campaigns. Also the CheckQuorum window of a leader."""
    heartbeat_ticks: int = _TIMING.heartbeat_ticks
    """A leader sends heartbeats every this many ticks (must be below ``election_ticks``)."""
    max_inflight: int = 256
    """Appends a leader keeps unacknowledged per follower in REPLICATE (flow control)."""
    max_batch_entries: int = 512
    """At most this many entries in one append message."""
    max_batch_bytes: int = 1 << 20
    """At most this many bytes of entry data in one append message (one entry may exceed it)."""
    snapshot_chunk_bytes: int = 1 << 20
    """A snapshot travels to a follower in chunks of this size."""
    compaction_retain: int = 1000
    """Entries kept in the log below a compaction point, so slightly lagging followers catch
    up from the log rather than from a snapshot."""
    learner_catchup_entries: int = 1000
    """A learner may be promoted once it is at most this many entries behind the leader's last
    index (and was heard from recently): ``confchange.catch_up_refusal``."""
    check_quorum: bool = True
    """A leader steps down when it has not heard from a quorum within an election timeout."""
    pre_vote: bool = True
    """Candidates first ask whether they could win (Raft dissertation 9.6), so a partitioned
    node rejoining does not raise everyone's term."""
    tick_seconds: float = _TIMING.tick_seconds
    """Wall-clock length of one tick: the runtime calls ``RaftCore.tick`` this often."""
    lease_drift: float = 0.1
    """Fraction of the lease given up for clocks that run at different rates (see above)."""
    fast_leader_loss: bool = True
    """A follower whose stream to the leader was reported lost may vote after
    ``leader_loss_quiet_ticks`` instead of a whole election timeout (faster failover)."""
    leader_loss_quiet_ticks: int = 2
    """How long such a follower must not have heard from the leader before it votes."""

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
