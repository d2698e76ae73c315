"""The Raft consensus core: a deterministic state machine with no I/O and no clock reads.

The application feeds inputs in (``tick``, ``step``, ``propose``, ``read_index``, ...) and takes the
outputs from ``ready()``: entries and hard state to persist, messages to send, committed entries to
apply, reads that became safe. It must persist a ``Ready`` before it sends its messages, apply the
committed entries after persisting, then call ``advance``. Time is given, never read: ticks drive
elections and heartbeats, and ``now`` (a monotonic clock reading) dates heartbeat rounds for the
leader lease.

Implements leader election with PreVote and CheckQuorum, log replication with fast backtracking
and flow control, ReadIndex and lease reads (also for followers, through the leader), snapshots
sent in chunks, leadership transfer, single-server membership changes with learners, and fast
leader-loss detection (``report_peer_lost``: elect a new leader without waiting out an election
timeout when the old leader's process is plainly gone).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from raftnode.raft.confchange import (
    LearnerProgress,
    catch_up_refusal,
    check_prev_index,
    next_configuration,
)
from raftnode.raft.config import RaftConfig
from raftnode.raft.errors import ConfChangeError, LeaderNotReady, NotLeaderError
from raftnode.raft.log import RaftLog
from raftnode.raft.membership import MembershipTracker
from raftnode.raft.progress import Progress, ProgressState
from raftnode.raft.quorum import VoteResult, committed_index, has_quorum, vote_result
from raftnode.raft.read_only import ReadTracker
from raftnode.raft.types import (
    NO_NODE,
    ConfChange,
    ConfChangeOp,
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


class Role(Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class SoftState:
    """What the node is right now, as the application shows it: neither persisted nor needed
    after a restart (etcd's ``SoftState``). ``leader_id`` is ``NO_NODE`` while none is known."""

    role: Role
    term: int
    leader_id: int


@dataclass(slots=True)
class Ready:
    """Work for the application, in this order: send ``early_messages``, persist, send
    ``messages``, apply, then ``advance``. Each field says what the application owes it.
    """

    soft_state: SoftState | None = None
    """Set when role, term or known leader changed since the previous ``Ready`` (and in the
    first one): the application updates what it shows (metrics, listeners, health) from it."""
    hard_state: HardState | None = None
    """Persist (atomically, durably) before sending ``messages``; set only when it changed. A
    vote or term that leaves before it is durable could be cast twice after a crash."""
    entries: list[Entry] = field(default_factory=list)
    """Append durably before sending ``messages``. They may overwrite a suffix already on disk
    (a new leader's log wins): storage truncates from ``entries[0].index``."""
    snapshot: Snapshot | None = None
    """A snapshot received from the leader: install it (storage, then the state machine)
    before persisting ``entries``; it replaces every log entry it covers."""
    early_messages: list[Message] = field(default_factory=list)
    """The leader's replication messages: send them before persisting (Raft thesis 10.2.1).
    Safe because the leader counts itself towards a commit only once ``advance`` reports its own
    entries durable."""
    messages: list[Message] = field(default_factory=list)
    """Everything else (votes, append acknowledgements, ...): send only after the persist,
    since each one promises what the node has stored."""
    committed_entries: list[Entry] = field(default_factory=list)
    """Apply to the state machine in order, after the persist. Contiguous, starting right after
    the previous ``Ready``'s last committed entry (or the installed snapshot)."""
    read_states: list[ReadState] = field(default_factory=list)
    """Reads that became safe: answer each once the state machine applied ``index`` (or
    refuse it when ``error`` is set)."""
    snapshot_wanted: bool = False
    """A follower needs entries compacted into an incomplete snapshot (a durable state
    machine's compaction point): materialize a complete snapshot at or after it, off the event
    loop, and hand it to ``compact``. Until then that follower waits."""


@dataclass(slots=True)
class _IncomingSnapshot:
    meta: SnapshotMeta
    chunks: list[bytes]
    received: int


class RaftCore:
    """One node's Raft state. Not thread-safe: drive it from one thread (one IOLoop)."""

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
        self._incoming: _IncomingSnapshot | None = None
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
        self._quiet_proven = False
        """We started a fast leader-loss campaign and heard from no leader since."""
        self._reset_randomized_timeout()

    # ------------------------------------------------------------------------------------
    # Bootstrap and state
    # ------------------------------------------------------------------------------------
    @staticmethod
    def bootstrap_entries(voters: Iterable[int]) -> list[Entry]:
        """The first log entry of a new cluster: its initial configuration, at term 1.

        Every initial member persists exactly this entry (and ``HardState(term=1, commit=1)``)
        before starting, so all logs agree on it; nodes that join later receive it from the leader.
        """
        conf = ConfState(voters=frozenset(voters))
        if not conf.voters or any(v <= 0 for v in conf.voters):
            raise ValueError("a cluster needs at least one voter, with positive ids")
        change = ConfChange(ConfChangeOp.BOOTSTRAP, NO_NODE, conf)
        return [Entry(term=1, index=1, type=EntryType.CONF_CHANGE, data=change.encode())]

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

    def has_quorum_contact(self) -> bool:
        """Leader only: a majority of voters was heard from within the last election timeout."""
        if self.role is not Role.LEADER:
            return False
        window = self.cfg.election_ticks

        def heard_recently(node: int) -> bool:
            pr = self.progress.get(node)
            return node == self.id or (pr is not None and self._ticks - pr.heard_tick < window)

        # Not recent_active: CheckQuorum clears it every election timeout, and until the next
        # heartbeat answers arrive a healthy leader would look quorum-less (/primary 503).
        return has_quorum(self.conf.voters, heard_recently)

    def lease_valid(self, now: float) -> bool:
        """Whether the leader may answer a read from its own state without a quorum round."""
        if self.role is not Role.LEADER or self.transferee != NO_NODE:
            return False
        if not self._committed_in_term():
            return False
        start = self._reads.lease_start(self.conf.voters, self.id)
        return start is not None and now < start + self.cfg.lease_seconds

    def snapshot_meta(self, index: int) -> SnapshotMeta:
        """Metadata for a snapshot of the state machine at applied ``index``."""
        if index > self.log.applied or index < self.log.offset:
            raise ValueError(
                f"snapshot index {index} must lie between {self.log.offset} and applied "
                f"{self.log.applied}"
            )
        term = self.log.term(index)
        assert term is not None
        return SnapshotMeta(index=index, term=term, conf=self._members.at(index))

    # ------------------------------------------------------------------------------------
    # Inputs
    # ------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        self._now = now
        self._ticks += 1
        self._ticks_since_boot += 1
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self._tick_election()

    def propose(self, data: bytes) -> int:
        """Append ``data`` as a new entry; returns its index. Leader only."""
        self._check_can_propose()
        return self._append_own([(EntryType.NORMAL, data)])

    def propose_many(self, datas: Sequence[bytes]) -> int:
        """Append several entries at once; returns the index of the first one."""
        self._check_can_propose()
        last = self._append_own([(EntryType.NORMAL, d) for d in datas])
        return last - len(datas) + 1

    def propose_conf_change(
        self,
        op: ConfChangeOp,
        node_id: int,
        context: dict[str, str] | None = None,
        prev_index: int | None = None,
    ) -> int:
        """Propose a single-server membership change; returns its entry index.

        The rules are ``confchange.next_configuration``'s: ADD_LEARNER adds a non-member,
        ADD_VOTER promotes a learner that has caught up, REMOVE removes a member but not the
        last voter. Only one change may be uncommitted at a time, the leader must have
        committed an entry of its own term first, and ``prev_index`` (when given) must be the
        current ``config_index``.
        """
        self._check_can_propose()
        if not self._committed_in_term():
            raise LeaderNotReady("the new leader has not committed an entry yet; retry shortly")
        if self._members.last_change_index() > self.log.committed:
            raise ConfChangeError("another membership change is still in progress")
        check_prev_index(prev_index, self.config_index)
        catch_up = self.learner_catch_up_refusal(node_id) if op is ConfChangeOp.ADD_VOTER else None
        result = next_configuration(self.conf, op, node_id, catch_up=catch_up)
        change = ConfChange(op, node_id, result, dict(context or {}))
        return self._append_own([(EntryType.CONF_CHANGE, change.encode())])

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

    def read_index(self, request_id: int, now: float, lease: bool = False) -> None:
        """Ask for a linearizable read; the answer comes back as a ``ReadState``.

        On the leader, ``lease=True`` answers at once while the lease holds. On a follower, the
        request goes to the leader; with no known leader it fails at once.
        """
        self._now = now
        if self.role is Role.LEADER:
            self._leader_read(self.id, request_id, lease)
            return
        if self.leader_id == NO_NODE:
            self._read_states.append(ReadState(request_id, 0, "no_leader"))
            return
        self._follower_reads.add(request_id)
        self._send(
            Message(MT.READ_INDEX, to=self.leader_id, frm=self.id, context=request_id, lease=lease)
        )

    def transfer_leadership(self, target: int | None = None) -> int:
        """Hand leadership to ``target`` (default: the most caught-up voter). Returns the target,
        or 0 when there is nobody to hand over to."""
        if self.role is not Role.LEADER:
            raise NotLeaderError("only the leader can transfer leadership", self.leader_id)
        if target is None:
            candidates = [v for v in self.conf.voters if v != self.id and v in self.progress]
            if not candidates:
                return NO_NODE
            target = max(
                candidates,
                key=lambda v: (self.progress[v].recent_active, self.progress[v].match, -v),
            )
        if target == self.id:
            return NO_NODE
        if target not in self.conf.voters:
            raise ValueError(f"node {target} is not a voter")
        self.transferee = target
        self.election_elapsed = 0
        if self.progress[target].match == self.log.last_index():
            self._send_timeout_now(target)
        else:
            self._dirty_peers.add(target)
        return target

    def compact(self, snapshot: Snapshot) -> None:
        """The application snapshotted its state at ``snapshot.meta.index`` (taken from
        ``snapshot_meta``): keep it for lagging followers and drop older log entries, retaining
        ``compaction_retain`` entries so briefly lagging followers need no snapshot."""
        meta = snapshot.meta
        if meta.index > self.log.applied:
            raise ValueError(f"snapshot index {meta.index} is beyond applied {self.log.applied}")
        current = self._snapshot
        if current is not None and (
            meta.index < current.meta.index
            or (meta.index == current.meta.index and snapshot.complete == current.complete)
        ):
            return  # an older one, or the same again (replacing a marker with a complete
            # snapshot at its index, or dropping a complete one's data, is allowed)
        self._snapshot = snapshot
        compact_to = min(meta.index, self.log.applied) - self.cfg.compaction_retain
        if compact_to > self.log.offset:
            self.log.compact(compact_to)
            self._members.compact(compact_to)

    def report_peer_lost(self, peer_id: int, now: float) -> None:
        """The transport's stream to ``peer_id`` was reset and reconnecting is refused: the
        peer's process is most likely gone (a live process does not refuse connections).

        Fast leader-loss detection: when ``peer_id`` is our leader, we start a pre-vote once we
        have not heard from it for ``leader_loss_quiet_ticks`` (at once when that has passed),
        instead of waiting out an election timeout, and mark our (pre)vote requests
        ``leader_lost``. A voter grants such a request despite leader stickiness only when its
        own link to its own leader was reported lost too and it has not heard from that leader
        for the same quiet period; a voter that still hears from the leader refuses as always,
        so one flapping link elects nobody. The mark is cleared by any message from the peer
        and by ``report_peer_reachable``. Why lease reads stay linearizable: see
        ``_grants_despite_leader``.
        """
        self._now = now
        if peer_id == self.id:
            return
        self._lost_peers.add(peer_id)
        self._maybe_campaign_for_lost_leader()

    def report_peer_reachable(self, peer_id: int, now: float) -> None:
        """A connection to ``peer_id`` succeeded again: undo ``report_peer_lost``."""
        self._now = now
        self._lost_peers.discard(peer_id)

    def step(self, m: Message, now: float) -> None:
        """Handle a message from a peer."""
        self._now = now
        # Whatever it says, a message proves its sender alive.
        self._lost_peers.discard(m.frm)
        if m.type is MT.REMOVED:
            if m.term >= self.term and not self.removed:
                # The leader's configuration no longer lists us (we missed the entry that
                # removed us): never campaign again unless a leader replicates to us anew.
                self.removed = True
                self._become_follower(m.term, NO_NODE)
            return
        if self.role is Role.LEADER and m.frm not in self.conf.members():
            # A removed node that never learned it (the entry removing it was not sent to
            # it) keeps campaigning: tell it, instead of letting its votes go unanswered.
            self._send(Message(MT.REMOVED, to=m.frm, frm=self.id, term=self.term))
            return
        if m.type in (MT.APPEND, MT.SNAPSHOT) and m.term >= self.term:
            self.removed = False  # a leader replicates to us: we are (again) a member
        if m.term > self.term:
            if (
                m.type in (MT.VOTE, MT.PRE_VOTE)
                and not m.force
                and self._in_leader_lease()
                and not self._grants_despite_leader(m)
            ):
                # A leader is alive (or we just booted): ignore disruptive candidates. This is
                # what makes the leader lease safe and keeps a rejoining node from deposing a
                # healthy leader.
                return
            if m.type is MT.PRE_VOTE or (m.type is MT.PRE_VOTE_RESP and not m.reject):
                pass  # a pre-vote does not change anybody's term
            elif m.type in (MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT):
                self._become_follower(m.term, m.frm)
            else:
                self._become_follower(m.term, NO_NODE)
        elif m.term < self.term and m.term != 0:
            if m.type in (MT.APPEND, MT.HEARTBEAT):
                # Tell a stale leader about the newer term, so that a node that was partitioned
                # (and, with PreVote, never raised its term) does not block it forever.
                self._send(Message(MT.APPEND_RESP, to=m.frm, frm=self.id, term=self.term))
            elif m.type is MT.PRE_VOTE:
                self._send(
                    Message(MT.PRE_VOTE_RESP, to=m.frm, frm=self.id, term=self.term, reject=True)
                )
            return

        if m.type in (MT.VOTE, MT.PRE_VOTE):
            self._handle_vote_request(m)
            return
        if self.role is Role.LEADER:
            self._step_leader(m)
        elif self.role is Role.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    # ------------------------------------------------------------------------------------
    # Outputs
    # ------------------------------------------------------------------------------------
    def has_ready(self) -> bool:
        return bool(
            self._msgs
            or self._early_msgs
            or self._dirty_peers
            or self._read_states
            or self._pending_snapshot is not None
            or self.log.unstable_from <= self.log.last_index()
            or self.log.committed > self._handed_applied
            or self._hard_state_changed()
            or self._soft_state_changed()
            or self._snapshot_wanted
        )

    def ready(self) -> Ready:
        if self._dirty_peers and self.role is Role.LEADER:
            for peer in sorted(self._dirty_peers):
                self._send_append(peer)
        self._dirty_peers.clear()
        rd = Ready()
        if self._soft_state_changed():
            rd.soft_state = self._last_soft_state = self.soft_state()
        if self._hard_state_changed():
            rd.hard_state = self.hard_state()
            self._last_hard_state = rd.hard_state
        if self._pending_snapshot is not None:
            rd.snapshot = self._pending_snapshot
            self._pending_snapshot = None
        rd.entries = self.log.unstable_entries()
        if rd.entries:
            self.log.mark_handed_to_storage(rd.entries[-1].index)
        if self.log.committed > self._handed_applied:
            rd.committed_entries = self.log.slice(self._handed_applied + 1, self.log.committed + 1)
            self._handed_applied = self.log.committed
        rd.messages, self._msgs = self._msgs, []
        rd.early_messages, self._early_msgs = self._early_msgs, []
        rd.read_states, self._read_states = self._read_states, []
        rd.snapshot_wanted, self._snapshot_wanted = self._snapshot_wanted, False
        return rd

    def advance(self, rd: Ready) -> None:
        """The application persisted, sent and applied ``rd`` (the latest ``ready()``)."""
        durable = self._persisted
        if rd.snapshot is not None:
            self.log.applied = max(self.log.applied, rd.snapshot.meta.index)
            durable = rd.snapshot.meta.index
        if rd.entries:
            durable = rd.entries[-1].index
        # A suffix truncated since ``ready()`` is not durable any more, whatever was written.
        self._persisted = min(durable, self.log.unstable_from - 1)
        if rd.committed_entries:
            self.log.applied = max(self.log.applied, rd.committed_entries[-1].index)
        if self.role is Role.LEADER and self._maybe_commit():
            self._dirty_peers.update(p for p in self.progress if p != self.id)

    # ------------------------------------------------------------------------------------
    # Roles
    # ------------------------------------------------------------------------------------
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

    def _become_pre_candidate(self) -> None:
        # Unlike a real candidate, a pre-candidate keeps its term and vote.
        self._fail_pending_reads("leader_changed")
        self.role = Role.PRE_CANDIDATE
        self._votes = {}
        self.leader_id = NO_NODE
        self._reset_randomized_timeout()

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def _become_leader(self) -> None:
        self._reset(self.term)
        self._quiet_proven = False
        self.role = Role.LEADER
        self.leader_id = self.id
        for peer, pr in self.progress.items():
            pr.recent_active = peer == self.id
        # A no-op entry of the new term: committing it commits everything before it
        # (Raft paper, 5.4.2), and it marks when the leader may serve reads.
        self._term_start_index = self.log.last_index() + 1
        self._append_own([(EntryType.NORMAL, b"")])

    def _campaign(self, pre_vote: bool, force: bool = False, leader_lost: bool = False) -> None:
        self._campaign_leader_lost = leader_lost
        if pre_vote:
            self._become_pre_candidate()
            term = self.term + 1
            msg_type = MT.PRE_VOTE
        else:
            self._become_candidate()
            term = self.term
            msg_type = MT.VOTE
        self._votes[self.id] = True
        if self._tally() is VoteResult.WON:
            self._won_election(pre_vote)
            return
        for voter in sorted(self.conf.voters):
            if voter == self.id:
                continue
            self._send(
                Message(
                    msg_type,
                    to=voter,
                    frm=self.id,
                    term=term,
                    index=self.log.last_index(),
                    log_term=self.log.last_term(),
                    force=force,
                    leader_lost=leader_lost,
                )
            )

    def _won_election(self, pre_vote: bool) -> None:
        if pre_vote:
            self._campaign(pre_vote=False, leader_lost=self._campaign_leader_lost)
        else:
            self._become_leader()

    def _tally(self) -> VoteResult:
        return vote_result(self.conf.voters, self._votes)

    # ------------------------------------------------------------------------------------
    # Ticks
    # ------------------------------------------------------------------------------------
    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self._maybe_campaign_for_lost_leader():
            return
        if self.election_elapsed >= self._randomized_timeout and self._promotable():
            self.election_elapsed = 0
            self._campaign(pre_vote=self.cfg.pre_vote)

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_ticks:
            self.election_elapsed = 0
            if self.cfg.check_quorum:
                if not has_quorum(self.conf.voters, self._is_recently_active):
                    self._become_follower(self.term, NO_NODE)
                    return
                for peer, pr in self.progress.items():
                    pr.recent_active = peer == self.id
            if self.transferee != NO_NODE:
                self.transferee = NO_NODE  # the transfer took too long: give up, keep leading
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self._broadcast_heartbeat()
        self._resend_stalled_snapshots()

    def _promotable(self) -> bool:
        return self.id in self.conf.voters and self._incoming is None and not self.removed

    def _in_leader_lease(self) -> bool:
        """Whether this node heard from a leader less than an election timeout ago (or booted
        less than an election timeout ago, when it cannot know)."""
        if not self.cfg.check_quorum:
            return False
        recent = self.leader_id != NO_NODE or self._ticks_since_boot < self.cfg.election_ticks
        return recent and self.election_elapsed < self.cfg.election_ticks

    # ------------------------------------------------------------------------------------
    # Fast leader-loss detection (report_peer_lost)
    # ------------------------------------------------------------------------------------
    def _leader_lost_and_quiet(self, margin: float = 0.0) -> bool:
        """The fast-path precondition on this node: a follower whose link to its leader was
        reported lost, and which has not heard from that leader for the quiet period
        (plus ``margin`` seconds)."""
        return (
            self.cfg.fast_leader_loss
            and self.role is Role.FOLLOWER
            and self.leader_id != NO_NODE
            and self.leader_id in self._lost_peers
            and self._now - self._leader_heard_at >= self.cfg.leader_loss_quiet_seconds + margin
        )

    def _maybe_campaign_for_lost_leader(self) -> bool:
        """Start a pre-vote marked ``leader_lost`` if the fast-path precondition holds.

        The campaign waits a quarter tick beyond the quiet period the voters check, so that a
        voter that heard the leader's last heartbeat a little later than we did (delivery
        jitter) has passed its own quiet period by the time our request arrives.
        """
        if not self._promotable() or not self._leader_lost_and_quiet(self.cfg.tick_seconds / 4):
            return False
        self.election_elapsed = 0
        self._quiet_proven = True
        self._campaign(pre_vote=self.cfg.pre_vote, leader_lost=True)
        return True

    def _grants_despite_leader(self, m: Message) -> bool:
        """Whether the fast leader-loss rule lets us answer vote request ``m`` although we are
        within our leader's stickiness window (``_in_leader_lease``): the candidate lost its
        link to its leader, ours to our leader is lost too, and we have not heard from our
        leader for ``leader_loss_quiet_seconds``; or we campaigned on this path ourselves and
        heard from no leader since (the same held when we started; this matters in the first
        election timeout after a boot, where a node that knows no leader ignores everybody,
        also after stepping back for a fellow candidate). Log up-to-dateness is checked as
        always.

        Why lease reads stay linearizable. The leader serves a lease read at time t when a
        majority acknowledged a heartbeat round it sent at T > t - lease_seconds. Each voter in
        that majority received the round at or after T, and from then on votes for nobody else
        until it has not heard from the leader for ``leader_loss_quiet_seconds`` (this path) or
        an election timeout (stickiness), by its own clock. ``lease_seconds`` is the shorter of
        the two times (1 - lease_drift), so while the lease holds, no voter of that majority
        can have voted for another candidate; any other leader needs a majority, which shares a
        voter with it, so no other leader can exist yet and the read sees every committed
        write. This does not rely on the transport's loss reports being right: a live leader
        whose links are wrongly reported lost (a flapping link, a firewall answering with
        resets) only costs an election, never a stale read. What it does rely on is what the
        lease already relied on: clock rates differ by less than ``lease_drift``. The quiet
        period also bounds how much faster this path can be: writes resume about
        ``leader_loss_quiet_ticks`` plus an election round trip after the leader's last
        heartbeat, instead of an election timeout or more. (A node that booted recently
        acknowledged nothing of its previous life since: it heard from its leader after
        booting and then waited the quiet period, so its boot is older than that.)
        """
        if not (self.cfg.fast_leader_loss and m.leader_lost):
            return False
        if self._quiet_proven and self.leader_id == NO_NODE:
            return True
        return self._leader_lost_and_quiet()

    def _reset_randomized_timeout(self) -> None:
        et = self.cfg.election_ticks
        self._randomized_timeout = et + self._rng.randrange(et)

    def _is_recently_active(self, node: int) -> bool:
        if node == self.id:
            return True
        pr = self.progress.get(node)
        return pr is not None and pr.recent_active

    # ------------------------------------------------------------------------------------
    # Votes
    # ------------------------------------------------------------------------------------
    def _handle_vote_request(self, m: Message) -> None:
        resp_type = MT.VOTE_RESP if m.type is MT.VOTE else MT.PRE_VOTE_RESP
        can_vote = (
            self.vote == m.frm
            or (self.vote == NO_NODE and self.leader_id == NO_NODE)
            or (m.type is MT.PRE_VOTE and m.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            self._send(Message(resp_type, to=m.frm, frm=self.id, term=m.term))
            if m.type is MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.frm
            elif self._yields_to(m):
                # Both of us noticed the leader's loss at about the same time. If both went on
                # to the real vote, each would have voted for itself and nobody would win until
                # an election timeout later: the less up-to-date (or, equal, higher-id) one
                # steps back and lets the other win.
                self._become_follower(self.term, NO_NODE)
        else:
            self._send(Message(resp_type, to=m.frm, frm=self.id, term=self.term, reject=True))

    def _yields_to(self, m: Message) -> bool:
        """Whether we, on a fast leader-loss pre-vote, step back for the (pre-vote) candidate
        of ``m``, also on one, whose log is at least as up to date as ours (granted already)."""
        if not (
            m.type is MT.PRE_VOTE
            and m.leader_lost
            and self.role is Role.PRE_CANDIDATE
            and self._campaign_leader_lost
            and m.term == self.term + 1
        ):
            return False
        ours = (self.log.last_term(), self.log.last_index())
        return (m.log_term, m.index) > ours or m.frm < self.id

    def _step_candidate(self, m: Message) -> None:
        expected = MT.PRE_VOTE_RESP if self.role is Role.PRE_CANDIDATE else MT.VOTE_RESP
        if m.type in (MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT):
            self._become_follower(m.term, m.frm)
            self._step_follower(m)
        elif m.type is expected:
            self._votes.setdefault(m.frm, not m.reject)
            result = self._tally()
            if result is VoteResult.WON:
                self._won_election(self.role is Role.PRE_CANDIDATE)
            elif result is VoteResult.LOST:
                self._become_follower(self.term, NO_NODE)
        elif m.type is MT.TIMEOUT_NOW:
            pass  # already campaigning
        elif m.type is MT.READ_INDEX:
            self._answer_read(m.frm, m.context, 0, "not_leader")

    # ------------------------------------------------------------------------------------
    # Follower
    # ------------------------------------------------------------------------------------
    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t in (MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT):
            self._leader_heard_at = self._now
            self._quiet_proven = False
        if t is MT.APPEND:
            self.election_elapsed = 0
            self.leader_id = m.frm
            self._handle_append(m)
        elif t is MT.HEARTBEAT:
            self.election_elapsed = 0
            self.leader_id = m.frm
            if m.commit > self.log.committed:
                self.log.commit_to(min(m.commit, self.log.last_index()))
            self._send(
                Message(MT.HEARTBEAT_RESP, to=m.frm, frm=self.id, term=self.term, context=m.context)
            )
        elif t is MT.SNAPSHOT:
            self.election_elapsed = 0
            self.leader_id = m.frm
            self._handle_snapshot_chunk(m)
        elif t is MT.TIMEOUT_NOW:
            if self._promotable():
                self._campaign(pre_vote=False, force=True)
        elif t is MT.READ_INDEX_RESP:
            if m.context in self._follower_reads:
                self._follower_reads.discard(m.context)
                if m.reject:
                    self._read_states.append(ReadState(m.context, 0, "not_leader"))
                else:
                    self._read_states.append(ReadState(m.context, m.index))
        elif t is MT.READ_INDEX:
            self._answer_read(m.frm, m.context, 0, "not_leader")

    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            self._send(
                Message(
                    MT.APPEND_RESP, to=m.frm, frm=self.id, term=self.term, index=self.log.committed
                )
            )
            return
        last_index_before = self.log.last_index()
        last_new, written_from = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            if written_from is not None:
                if written_from <= last_index_before:
                    self._members.truncate_from(written_from)
                self._members.observe([e for e in m.entries if e.index >= written_from])
            self._send(
                Message(MT.APPEND_RESP, to=m.frm, frm=self.id, term=self.term, index=last_new)
            )
            return
        hint = min(m.index, self.log.last_index())
        hint = self.log.find_conflict_by_term(hint, m.log_term)
        hint_term = self.log.term(hint) or 0
        self._send(
            Message(
                MT.APPEND_RESP,
                to=m.frm,
                frm=self.id,
                term=self.term,
                index=m.index,
                reject=True,
                reject_hint=hint,
                log_term=hint_term,
            )
        )

    def _handle_snapshot_chunk(self, m: Message) -> None:
        meta = m.snapshot_meta
        assert meta is not None
        reply = Message(MT.SNAPSHOT_RESP, to=m.frm, frm=self.id, term=self.term, index=meta.index)
        if meta.index <= self.log.committed:
            # Nothing to install: answer as if it was, with where we are.
            self._incoming = None
            self._send(_with(reply, offset=m.offset + len(m.data), done=True))
            self._send(
                Message(
                    MT.APPEND_RESP, to=m.frm, frm=self.id, term=self.term, index=self.log.committed
                )
            )
            return
        if m.offset == 0:
            self._incoming = _IncomingSnapshot(meta, [], 0)
        inc = self._incoming
        if inc is None or inc.meta != meta or inc.received != m.offset:
            received = inc.received if inc is not None and inc.meta == meta else 0
            self._send(_with(reply, offset=received, reject=True))
            return
        inc.chunks.append(m.data)
        inc.received += len(m.data)
        if not m.done:
            self._send(_with(reply, offset=inc.received))
            return
        self._incoming = None
        snapshot = Snapshot(meta, b"".join(inc.chunks))
        self._restore(snapshot)
        self._send(_with(reply, offset=inc.received, done=True))

    def _restore(self, snapshot: Snapshot) -> None:
        meta = snapshot.meta
        if self.log.match_term(meta.index, meta.term):
            # We have the snapshot's entries already: just commit up to it.
            self.log.commit_to(meta.index)
            return
        self.log.restore(meta.index, meta.term)
        self._persisted = min(self._persisted, meta.index)
        self._members.reset(meta.conf, meta.index)
        self._snapshot = snapshot
        self._pending_snapshot = snapshot
        self._handed_applied = meta.index
        self._reset_progress()

    # ------------------------------------------------------------------------------------
    # Leader
    # ------------------------------------------------------------------------------------
    def _step_leader(self, m: Message) -> None:
        pr = self.progress.get(m.frm)
        t = m.type
        if t is MT.READ_INDEX:
            self._leader_read(m.frm, m.context, m.lease)
            return
        if pr is None:
            return
        pr.recent_active = True
        pr.heard_tick = self._ticks
        if t is MT.APPEND_RESP:
            self._handle_append_resp(m, pr)
        elif t is MT.HEARTBEAT_RESP:
            pr.probe_sent = False
            if pr.match < self.log.last_index() and pr.state is not ProgressState.SNAPSHOT:
                if (
                    pr.state is ProgressState.REPLICATE
                    and self._ticks - pr.last_ack_tick > self._replication_stall_ticks()
                ):
                    # The peer answers heartbeats but not our appends: some were lost (e.g. a
                    # reconnect). Probe from its match index again instead of waiting forever.
                    pr.become_probe()
                self._dirty_peers.add(m.frm)
            if m.context:
                self._reads.ack(m.frm, m.context)
                self._release_reads()
        elif t is MT.SNAPSHOT_RESP:
            self._handle_snapshot_resp(m, pr)

    def _replication_stall_ticks(self) -> int:
        return max(2 * self.cfg.heartbeat_ticks, self.cfg.election_ticks // 4)

    def _handle_append_resp(self, m: Message, pr: Progress) -> None:
        pr.last_ack_tick = self._ticks
        if m.reject:
            hint = m.reject_hint
            if m.log_term > 0:
                hint = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decrease_to(m.index, hint):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._dirty_peers.add(m.frm)
            return
        if pr.maybe_update(m.index):
            if pr.state is ProgressState.PROBE:
                pr.become_replicate()
            elif pr.state is ProgressState.SNAPSHOT and pr.match >= self._snapshot_index(pr):
                pr.become_probe()
            elif pr.state is ProgressState.REPLICATE:
                pr.inflights.free_up_to(m.index)
            if self._maybe_commit():
                self._dirty_peers.update(p for p in self.progress if p != self.id)
            self._dirty_peers.add(m.frm)
            if m.frm == self.transferee and pr.match == self.log.last_index():
                self._send_timeout_now(m.frm)
        elif pr.state is ProgressState.REPLICATE:
            pr.inflights.free_up_to(m.index)
            self._dirty_peers.add(m.frm)
        elif pr.state is ProgressState.PROBE and pr.next <= self.log.last_index():
            self._dirty_peers.add(m.frm)

    def _snapshot_index(self, pr: Progress) -> int:
        return pr.snapshot.meta.index if pr.snapshot is not None else 0

    def _handle_snapshot_resp(self, m: Message, pr: Progress) -> None:
        if pr.state is not ProgressState.SNAPSHOT or pr.snapshot is None:
            return
        if m.index != pr.snapshot.meta.index:
            return
        if m.done:
            pr.maybe_update(m.index)
            pr.become_probe()
            self._dirty_peers.add(m.frm)
            return
        pr.snapshot_acked = m.offset
        self._send_snapshot_chunk(m.frm, pr)

    def _send_timeout_now(self, peer: int) -> None:
        self._send(Message(MT.TIMEOUT_NOW, to=peer, frm=self.id, term=self.term))

    def _maybe_commit(self) -> bool:
        voters = self.conf.voters
        index = committed_index(voters, self._match_of)
        if index > self.log.committed and self.log.term(index) == self.term:
            self.log.commit_to(index)
            self._on_commit_advanced()
            return True
        return False

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
        self._dirty_peers.update(p for p in self.progress if p != self.id)
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

    def _send_append(self, peer: int) -> None:
        """Send what the peer's window allows: new entries, or an empty append that carries a
        newer commit index (so followers apply, and serve reads, without waiting a heartbeat)."""
        pr = self.progress.get(peer)
        if pr is None or peer == self.id:
            return
        while not pr.is_paused():
            prev_index = pr.next - 1
            prev_term = self.log.term(prev_index)
            if prev_term is None:
                self._start_snapshot(peer, pr)
                return
            last = self.log.last_index()
            entries: list[Entry] = []
            if pr.next <= last:
                hi = min(last + 1, pr.next + self.cfg.max_batch_entries)
                entries = self.log.slice(pr.next, hi, self.cfg.max_batch_bytes)
            elif pr.state is ProgressState.REPLICATE and pr.commit_sent >= self.log.committed:
                return
            self._send(
                Message(
                    MT.APPEND,
                    to=peer,
                    frm=self.id,
                    term=self.term,
                    index=prev_index,
                    log_term=prev_term,
                    entries=tuple(entries),
                    commit=self.log.committed,
                )
            )
            pr.commit_sent = self.log.committed
            pr.sent_entries(entries[-1].index if entries else prev_index)
            if pr.state is ProgressState.PROBE or not entries:
                return

    def _start_snapshot(self, peer: int, pr: Progress) -> None:
        snapshot = self._snapshot
        if snapshot is None:
            raise AssertionError(
                f"follower {peer} needs compacted entries but there is no snapshot"
            )
        if not snapshot.complete:
            self._snapshot_wanted = True  # the follower waits (in PROBE) until one is offered
            return
        pr.become_snapshot(snapshot)
        self._send_snapshot_chunk(peer, pr)

    def _send_snapshot_chunk(self, peer: int, pr: Progress) -> None:
        snapshot = pr.snapshot
        assert snapshot is not None
        start = pr.snapshot_acked
        chunk = snapshot.data[start : start + self.cfg.snapshot_chunk_bytes]
        done = start + len(chunk) >= len(snapshot.data)
        pr.snapshot_sent_tick = self._ticks
        self._send(
            Message(
                MT.SNAPSHOT,
                to=peer,
                frm=self.id,
                term=self.term,
                snapshot_meta=snapshot.meta,
                offset=start,
                data=chunk,
                done=done,
            )
        )

    def _resend_stalled_snapshots(self) -> None:
        for peer, pr in self.progress.items():
            if (
                pr.state is ProgressState.SNAPSHOT
                and self._ticks - pr.snapshot_sent_tick >= 2 * self.cfg.heartbeat_ticks + 2
            ):
                self._send_snapshot_chunk(peer, pr)

    def _broadcast_heartbeat(self) -> None:
        round_ = self._reads.start_round(self._now)
        for peer, pr in self.progress.items():
            if peer == self.id:
                continue
            self._send(
                Message(
                    MT.HEARTBEAT,
                    to=peer,
                    frm=self.id,
                    term=self.term,
                    commit=min(pr.match, self.log.committed),
                    context=round_,
                )
            )
        self._release_reads()

    def _leader_read(self, requester: int, request_id: int, lease: bool) -> None:
        if not self._committed_in_term():
            self._waiting_reads.append((requester, request_id))
            return
        if lease and self.lease_valid(self._now):
            self._answer_read(requester, request_id, self.log.committed)
            return
        self._reads.add(requester, request_id, self.log.committed)
        if len(self.conf.voters - {self.id}) == 0:
            self._reads.start_round(self._now)
            self._release_reads()
        elif not self._reads.has_unacked_round(self.conf.voters, self.id):
            # No round in flight: start one now. Otherwise the read rides the next round, which
            # is sent when the current one completes, so concurrent reads share one round trip.
            self._broadcast_heartbeat()

    def _release_reads(self) -> None:
        for read in self._reads.release(self.conf.voters, self.id):
            self._answer_read(read.requester, read.request_id, read.index)
        if self._reads.round_wanted and not self._reads.has_unacked_round(
            self.conf.voters, self.id
        ):
            self._broadcast_heartbeat()

    def _answer_read(
        self, requester: int, request_id: int, index: int, error: str | None = None
    ) -> None:
        """Answer a read: a ReadState for our own, a READ_INDEX_RESP for a follower's."""
        if requester == self.id:
            self._read_states.append(ReadState(request_id, 0 if error else index, error))
        else:
            self._send(
                Message(
                    MT.READ_INDEX_RESP,
                    to=requester,
                    frm=self.id,
                    term=self.term,
                    context=request_id,
                    index=0 if error else index,
                    reject=error is not None,
                )
            )

    def _fail_pending_reads(self, reason: str) -> None:
        pending = [(r.requester, r.request_id) for r in self._reads.drain()]
        pending.extend(self._waiting_reads)
        self._waiting_reads = []
        for requester, request_id in pending:
            self._answer_read(requester, request_id, 0, reason)
        for request_id in sorted(self._follower_reads):
            self._read_states.append(ReadState(request_id, 0, reason))
        self._follower_reads.clear()

    # ------------------------------------------------------------------------------------
    # Plumbing
    # ------------------------------------------------------------------------------------
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


_EARLY_TYPES = frozenset({MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT})
"""Leader messages that do not depend on the leader's own persistence."""


def _with(m: Message, **changes: object) -> Message:
    return replace(m, **changes)  # type: ignore[arg-type]
