"""The follower's side: appends and snapshot chunks from the leader."""

from __future__ import annotations

from raftnode.raft.core_state import MT, CoreState, IncomingSnapshot, with_changes
from raftnode.raft.types import (
    Message,
    ReadState,
    Snapshot,
)


class Following(CoreState):
    """A follower's handling of the leader's appends and snapshot chunks. A part of ``RaftCore``."""

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
            self._send(with_changes(reply, offset=m.offset + len(m.data), done=True))
            self._send(
                Message(
                    MT.APPEND_RESP, to=m.frm, frm=self.id, term=self.term, index=self.log.committed
                )
            )
            return
        if m.offset == 0:
            self._incoming = IncomingSnapshot(meta, [], 0)
        inc = self._incoming
        if inc is None or inc.meta != meta or inc.received != m.offset:
            received = inc.received if inc is not None and inc.meta == meta else 0
            self._send(with_changes(reply, offset=received, reject=True))
            return
        inc.chunks.append(m.data)
        inc.received += len(m.data)
        if not m.done:
            self._send(with_changes(reply, offset=inc.received))
            return
        self._incoming = None
        snapshot = Snapshot(meta, b"".join(inc.chunks))
        self._restore(snapshot)
        self._send(with_changes(reply, offset=inc.received, done=True))

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
