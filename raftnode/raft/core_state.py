"""The state every part of the Raft core shares, and the small rules they all use.

``RaftCore`` (``raft.core``) is assembled from this state and three parts, each a class of its
own file: elections and votes (``raft.election``), the leader's replication and reads
(``raft.replication``), and the follower's side of appends and snapshots (``raft.follower``).
They share one object, as one state machine; the split is for the reader.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from raftnode.raft.confchange import (
    LearnerProgress,
    catch_up_refusal,
)
from raftnode.raft.config import RaftConfig
from raftnode.raft.errors import NotLeaderError
from raftnode.raft.log import RaftLog
from raftnode.raft.membership import MembershipTracker
from raftnode.raft.progress import Progress
from raftnode.raft.read_only import ReadTracker
from raftnode.raft.status import Role
from raftnode.raft.types import (
    NO_NODE,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SnapshotMeta,
)

MT = MessageType


@dataclass(frozen=True, slots=True)
class SoftState:
    """What the node is right now, as the application shows it: neither persisted nor needed
    after a restart (etcd's ``SoftState``). ``leader_id`` is ``NO_NODE`` while none is known."""

    role: Role
    term: int
    leader_id: int


@dataclass(slots=True)
class IncomingSnapshot:
    meta: SnapshotMeta
    chunks: list[bytes]
    received: int


class CoreState:
    """The core's fields and the helpers every part uses. Not used on its own."""

    def __init__(
        self,
        config: RaftConfig,
        *,
        rng: random.Random,
        hard_state: HardState | None = None,
        snapshot: Snapshot | None = None,
        entries: Sequence[Entry] = (),
    ):
        hard_state = hard_state or HardState()
        self.cfg = config
        self.id = config.node_id
        self._rng = rng
        meta = snapshot.meta if snapshot is not None else SnapshotMeta()
        self._snapshot: Snapshot | None = snapshot
        self.log = RaftLog(meta.index, meta.term, [e for e in entries if e.index > meta.index])
        self._members = MembershipTracker(meta.conf, meta.index)
        self._members.observe(self.log.slice(self.log.first_index(), self.log.last_index() + 1))

        self.term = hard_state.term
        self.vote = hard_state.vote
        self.log.committed = max(meta.index, min(hard_state.commit, self.log.last_index()))
        self._handed_applied = meta.index
        self._last_hard_state = HardState(self.term, self.vote, self.log.committed)
        self._last_soft_state: SoftState | None = None

        self.role = Role.FOLLOWER
        self.leader_id = NO_NODE
        self.progress: dict[int, Progress] = {}
        self._votes: dict[int, bool] = {}
        self._msgs: list[Message] = []
        self._early_msgs: list[Message] = []
        self._persisted = self.log.last_index()
        self._read_states: list[ReadState] = []
        self._reads = ReadTracker()
        self._waiting_reads: list[tuple[int, int]] = []
        self._follower_reads: set[int] = set()
        self._pending_snapshot: Snapshot | None = None
        self._snapshot_wanted = False
        self.removed = False
        """A leader said its configuration does not list this node (``MessageType.REMOVED``)."""
        self._incoming: IncomingSnapshot | None = None
        self._dirty_peers: set[int] = set()

        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._ticks_since_boot = 0
        self._ticks = 0
        self._randomized_timeout = 0
        self.transferee = NO_NODE
        self._term_start_index = 0
        self._now = 0.0
        self._lost_peers: set[int] = set()
        self._leader_heard_at = 0.0
        self._campaign_leader_lost = False
        self._campaign_transfer = False
        """The campaign under way was asked for by the leader (TimeoutNow: a transfer)."""
        self._quiet_proven = False
        """We started a fast leader-loss campaign and heard from no leader since."""
        self._reset_randomized_timeout()

    @property
    def conf(self) -> ConfState:
        return self._members.current

    @property
    def commit_index(self) -> int:
        return self.log.committed

    @property
    def applied_index(self) -> int:
        return self.log.applied

    @property
    def last_index(self) -> int:
        return self.log.last_index()

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def soft_state(self) -> SoftState:
        return SoftState(self.role, self.term, self.leader_id)

    def is_voter(self) -> bool:
        return self.id in self.conf.voters

    @property
    def config_index(self) -> int:
        """The log index of the configuration in force (or of the snapshot that holds it)."""
        return self._members.last_change_index()

    def learner_catch_up_refusal(self, node_id: int) -> str | None:
        """Why ``node_id`` may not be promoted yet (``confchange.catch_up_refusal``); leader."""
        pr = self.progress.get(node_id)
        seen = None if pr is None else LearnerProgress(pr.match, pr.recent_active)
        return catch_up_refusal(
            node_id, seen, self.log.last_index(), self.cfg.learner_catchup_entries
        )

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = NO_NODE
        self.leader_id = NO_NODE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_timeout()
        self._votes = {}
        self.transferee = NO_NODE
        self._dirty_peers.clear()
        self._fail_pending_reads("leader_changed")
        self._reads = ReadTracker()
        self._waiting_reads = []
        self._reset_progress()

    def _reset_progress(self) -> None:
        last = self.log.last_index()
        old = self.progress
        self.progress = {}
        for member in self.conf.members():
            pr = Progress(last + 1, self.cfg.max_inflight)
            if member == self.id:
                pr.match = last
            if member in old:
                pr.recent_active = old[member].recent_active
            pr.heard_tick = self._ticks  # a new term's leader heard a quorum's votes just now
            self.progress[member] = pr

    def _become_follower(self, term: int, leader: int) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader_id = leader

    def _reset_randomized_timeout(self) -> None:
        et = self.cfg.election_ticks
        self._randomized_timeout = et + self._rng.randrange(et)

    def _is_recently_active(self, node: int) -> bool:
        if node == self.id:
            return True
        pr = self.progress.get(node)
        return pr is not None and pr.recent_active

    def _snapshot_index(self, pr: Progress) -> int:
        return pr.snapshot.meta.index if pr.snapshot is not None else 0

    def _match_of(self, node: int) -> int:
        if node == self.id:
            # Our own entries count once durable, and not if truncated since they were.
            return min(self._persisted, self.log.unstable_from - 1)
        pr = self.progress.get(node)
        return pr.match if pr is not None else 0

    def _on_commit_advanced(self) -> None:
        if self._waiting_reads and self._committed_in_term():
            waiting, self._waiting_reads = self._waiting_reads, []
            for requester, request_id in waiting:
                self._leader_read(requester, request_id, lease=False)
        if (
            self.id not in self.conf.voters
            and self._members.last_change_index() <= self.log.committed
        ):
            # Our own removal is committed: hand over by stepping down; the others elect.
            self._become_follower(self.term, NO_NODE)

    def _committed_in_term(self) -> bool:
        return self.log.committed >= self._term_start_index > 0

    def _check_can_propose(self) -> None:
        if self.role is not Role.LEADER:
            raise NotLeaderError("this node is not the leader", self.leader_id)
        if self.transferee != NO_NODE:
            raise NotLeaderError("leadership is being transferred", self.transferee)

    def _append_own(self, items: list[tuple[EntryType, bytes]]) -> int:
        index = self.log.last_index()
        entries = []
        for entry_type, data in items:
            index += 1
            entries.append(Entry(term=self.term, index=index, type=entry_type, data=data))
        self.log.append(entries)
        if self._members.observe(entries):
            self._on_conf_changed()
        self._maybe_commit()
        self._mark_peers_dirty()
        return index

    def _mark_peers_dirty(self) -> None:
        """Every peer is owed an append (new entries, or a newer commit index)."""
        self._dirty_peers.update(p for p in self.progress if p != self.id)

    def _append_normal(self, data: bytes) -> int:
        """``_append_own`` of one normal entry, the path of every write. Nothing else can move
        here: a normal entry changes no configuration, and this node's own entries count
        towards the commit index only once they are durable (``advance``)."""
        index = self.log.last_index() + 1
        self.log.append((Entry(term=self.term, index=index, type=EntryType.NORMAL, data=data),))
        self._mark_peers_dirty()
        return index

    def _on_conf_changed(self) -> None:
        last = self.log.last_index()
        members = self.conf.members()
        for member in members:
            if member not in self.progress:
                pr = Progress(last + 1, self.cfg.max_inflight)
                if member == self.id:
                    pr.match = last
                pr.recent_active = True  # give it an election timeout to answer
                pr.heard_tick = self._ticks
                self.progress[member] = pr
        for gone in [p for p in self.progress if p not in members and p != self.id]:
            del self.progress[gone]
        if self.transferee != NO_NODE and self.transferee not in self.conf.voters:
            self.transferee = NO_NODE

    def _send(self, m: Message) -> None:
        if self.role is Role.LEADER and m.type in _EARLY_TYPES:
            self._early_msgs.append(m)
        else:
            self._msgs.append(m)

    def _hard_state_changed(self) -> bool:
        last = self._last_hard_state
        return last.term != self.term or last.vote != self.vote or last.commit != self.log.committed

    def _soft_state_changed(self) -> bool:
        last = self._last_soft_state
        return (
            last is None
            or last.role is not self.role
            or last.term != self.term
            or last.leader_id != self.leader_id
        )

    # -- provided by the parts (raft.election, raft.replication, raft.follower, raft.core) --
    # Declared here so that each part may call the others; RaftCore inherits the real ones.

    def lease_valid(self, now: float) -> bool:
        raise NotImplementedError

    def _campaign(self, pre_vote: bool, force: bool = False, leader_lost: bool = False) -> None:
        raise NotImplementedError

    def _promotable(self) -> bool:
        raise NotImplementedError

    def _become_leader(self) -> None:
        raise NotImplementedError

    def _maybe_commit(self) -> bool:
        raise NotImplementedError

    def _leader_read(self, requester: int, request_id: int, lease: bool) -> None:
        raise NotImplementedError

    def _answer_read(
        self, requester: int, request_id: int, index: int, error: str | None = None
    ) -> None:
        raise NotImplementedError

    def _fail_pending_reads(self, reason: str) -> None:
        raise NotImplementedError

    def _step_follower(self, m: Message) -> None:
        raise NotImplementedError


_EARLY_TYPES = frozenset({MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT})
"""Leader messages that do not depend on the leader's own persistence."""


def with_changes(m: Message, **changes: object) -> Message:
    return replace(m, **changes)  # type: ignore[arg-type]
