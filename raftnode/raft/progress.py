"""What the leader knows about each follower's log, and how much it may send it.

A follower is in one of three states (as in etcd's raft):
- PROBE: the leader does not know where the follower's log matches; it sends one append per
  heartbeat interval and waits for the answer.
- REPLICATE: the match is known; the leader streams appends optimistically, bounded by a window of
  in-flight messages.
- SNAPSHOT: the follower needs entries the leader has compacted; the leader sends a snapshot in
  chunks and waits for each chunk's acknowledgement.
"""

from __future__ import annotations

from collections import deque
from enum import Enum

from raftnode.raft.types import Snapshot


class ProgressState(Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """A bounded window of in-flight appends, identified by their last index."""

    __slots__ = ("_last_indexes", "capacity")

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._last_indexes: deque[int] = deque()

    def add(self, last_index: int) -> None:
        self._last_indexes.append(last_index)

    def free_up_to(self, index: int) -> None:
        while self._last_indexes and self._last_indexes[0] <= index:
            self._last_indexes.popleft()

    def full(self) -> bool:
        return len(self._last_indexes) >= self.capacity

    def reset(self) -> None:
        self._last_indexes.clear()

    def __len__(self) -> int:
        return len(self._last_indexes)


class Progress:
    """Replication progress of one peer, as the leader sees it."""

    __slots__ = (
        "commit_sent",
        "heard_tick",
        "inflights",
        "last_ack_tick",
        "match",
        "next",
        "probe_sent",
        "recent_active",
        "snapshot",
        "snapshot_acked",
        "snapshot_sent_tick",
        "state",
    )

    def __init__(self, next_index: int, max_inflight: int):
        self.match = 0
        """Highest index known to be in the follower's log and durable there. Only grows within
        a term (``maybe_update``); the commit index is the quorum's median of ``match``."""
        self.next = next_index
        """Index of the next entry to send. Invariant: ``match < next``. REPLICATE advances it
        optimistically on send; a rejection moves it back, never below ``match + 1``."""
        self.state = ProgressState.PROBE
        """How the leader sends to this follower (see the module docstring)."""
        self.probe_sent = False
        """PROBE only: an append is out and unanswered; no other is sent until an answer or the
        next heartbeat interval."""
        self.recent_active = False
        """Heard from since the last CheckQuorum round (reset by the leader every election
        timeout); a leader without a quorum of active voters steps down."""
        self.inflights = Inflights(max_inflight)
        """REPLICATE only: the last index of each unacknowledged append, oldest first; freed up
        to each acknowledged index. Sending stops while it is full."""
        self.snapshot: Snapshot | None = None
        """SNAPSHOT only: the snapshot being sent in chunks; None in the other states."""
        self.snapshot_acked = 0
        """SNAPSHOT only: bytes of ``snapshot`` the follower confirmed (the next chunk's offset)."""
        self.snapshot_sent_tick = 0
        """The leader's tick when the last snapshot chunk left, to resend a lost one."""
        self.commit_sent = 0
        """The commit index last sent; a heartbeat or empty append carries a newer one."""
        self.last_ack_tick = 0
        """The leader's tick of the last answer, for stall detection."""
        self.heard_tick = 0
        """The leader's tick when it last heard anything from the peer (or took office): a
        sliding window for ``has_quorum_contact``, unlike ``recent_active``, which CheckQuorum
        clears every election timeout."""

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT and self.snapshot is not None:
            self.next = max(self.match + 1, self.snapshot.meta.index + 1)
        else:
            self.next = self.match + 1
        self._reset(ProgressState.PROBE)

    def become_replicate(self) -> None:
        self.next = self.match + 1
        self._reset(ProgressState.REPLICATE)

    def become_snapshot(self, snapshot: Snapshot) -> None:
        self._reset(ProgressState.SNAPSHOT)
        self.snapshot = snapshot
        self.snapshot_acked = 0

    def _reset(self, state: ProgressState) -> None:
        self.state = state
        self.probe_sent = False
        self.inflights.reset()
        if state is not ProgressState.SNAPSHOT:
            self.snapshot = None
            self.snapshot_acked = 0

    def maybe_update(self, index: int) -> bool:
        """Record an acknowledgement of everything up to ``index``. True when match advanced."""
        updated = False
        if index > self.match:
            self.match = index
            updated = True
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decrease_to(self, rejected: int, match_hint: int) -> bool:
        """Handle a rejected append at ``rejected``. False when the rejection is stale."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def sent_entries(self, last_index: int) -> None:
        if self.state is ProgressState.REPLICATE:
            self.next = last_index + 1
            self.inflights.add(last_index)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def __repr__(self) -> str:
        return f"Progress(match={self.match}, next={self.next}, state={self.state.value})"
