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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from raftnode.raft.confchange import (
    check_prev_index,
    next_configuration,
)
from raftnode.raft.core_state import MT, SoftState
from raftnode.raft.election import Election
from raftnode.raft.errors import ConfChangeError, LeaderNotReady, NotLeaderError
from raftnode.raft.follower import Following
from raftnode.raft.quorum import has_quorum
from raftnode.raft.replication import Replication
from raftnode.raft.status import PeerProgress, Role, Status, membership_of
from raftnode.raft.types import (
    NO_NODE,
    ConfChange,
    ConfChangeOp,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    ReadState,
    Snapshot,
    SnapshotMeta,
)

__all__ = ["RaftCore", "Ready", "Role", "SoftState"]


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
    """Apply to the state machine in order, after the persist (but see ``durable_committed``).
    Contiguous, starting right after the previous ``Ready``'s last committed entry (or the
    installed snapshot)."""
    durable_committed: int = 0
    """How many of ``committed_entries``, from the first, this node's storage already holds
    durably (from earlier readies, not overwritten by ``entries``): those may be applied
    before the persist, so that a commit need not wait for the fsync of the next batch."""
    read_states: list[ReadState] = field(default_factory=list)
    """Reads that became safe: answer each once the state machine applied ``index`` (or
    refuse it when ``error`` is set)."""
    snapshot_wanted: bool = False
    """A follower needs entries compacted into an incomplete snapshot (a durable state
    machine's compaction point): materialize a complete snapshot at or after it, off the event
    loop, and hand it to ``compact``. Until then that follower waits."""


class RaftCore(Election, Replication, Following):
    """One node's Raft state. Not thread-safe: drive it from one thread (one event loop)."""

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
    def membership(self) -> str:
        """``status().membership`` without copying the rest of the status."""
        return membership_of(self.id, self.conf, self.removed)

    def status(self) -> Status:
        """An immutable copy of what the application may know (``raft.status``)."""
        progress: dict[int, PeerProgress] = {}
        caught_up: frozenset[int] = frozenset()
        if self.role is Role.LEADER:
            progress = {
                peer: PeerProgress(pr.match, pr.next, pr.state.name.lower(), pr.recent_active)
                for peer, pr in self.progress.items()
                if peer != self.id
            }
            caught_up = frozenset(
                learner
                for learner in self.conf.learners
                if self.learner_catch_up_refusal(learner) is None
            )
        return Status(
            id=self.id,
            role=self.role,
            term=self.term,
            leader_id=self.leader_id,
            commit=self.log.committed,
            applied=self.log.applied,
            last_index=self.log.last_index(),
            conf=self.conf,
            config_index=self.config_index,
            removed=self.removed,
            ticks_since_leader=0 if self.role is Role.LEADER else self.election_elapsed,
            heartbeat_ticks=self.cfg.heartbeat_ticks,
            election_ticks=self.cfg.election_ticks,
            progress=progress,
            learners_caught_up=caught_up,
            campaign_transfer=self._campaign_transfer and self.role is not Role.FOLLOWER,
        )

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
        return self._append_normal(data)

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
        durable = min(self._persisted, self.log.unstable_from - 1)
        rd.entries = self.log.unstable_entries()
        if rd.entries:
            self.log.mark_handed_to_storage(rd.entries[-1].index)
        if self.log.committed > self._handed_applied:
            first = self._handed_applied + 1
            rd.committed_entries = self.log.slice(first, self.log.committed + 1)
            rd.durable_committed = max(0, min(len(rd.committed_entries), durable - first + 1))
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
            self._mark_peers_dirty()
