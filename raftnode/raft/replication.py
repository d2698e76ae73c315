"""The leader: replication with flow control, snapshots to followers, heartbeats, commit,
and ReadIndex and lease reads."""

from __future__ import annotations

from raftnode.raft.core_state import MT, CoreState
from raftnode.raft.progress import Progress, ProgressState
from raftnode.raft.quorum import committed_index, has_quorum
from raftnode.raft.status import Role
from raftnode.raft.types import (
    NO_NODE,
    Entry,
    EntryType,
    Message,
    ReadState,
)


class Replication(CoreState):
    """What a leader does: replicate, send snapshots and heartbeats, commit, answer reads.
    A part of ``RaftCore``."""

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
                self._mark_peers_dirty()
            self._dirty_peers.add(m.frm)
            if m.frm == self.transferee and pr.match == self.log.last_index():
                self._send_timeout_now(m.frm)
        elif pr.state is ProgressState.REPLICATE:
            pr.inflights.free_up_to(m.index)
            self._dirty_peers.add(m.frm)
        elif pr.state is ProgressState.PROBE and pr.next <= self.log.last_index():
            self._dirty_peers.add(m.frm)

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
                    # The follower cannot commit past what it holds, but its lag (readiness)
                    # must count from the leader's commit: a restarted follower's match is
                    # where it stopped, and it would report itself caught up.
                    index=self.log.committed,
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
