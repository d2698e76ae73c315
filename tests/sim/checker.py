"""Raft's safety properties, checked incrementally while a simulation runs.

- Election Safety: at most one leader per term.
- Log Matching: two logs holding an entry with the same index and term agree on its data and on
  the term of the entry before it (which, by induction, makes their prefixes identical).
- Leader Completeness: a new leader's log holds every entry committed so far.
- State Machine Safety: every node applies the same entry at each index, in order, exactly once.
- Linearizable reads: a read answered at a node reflects every write acknowledged before the read
  started (the node's applied index is at least the index of each such write).
- Store determinism (``ExactlyOnce``, when the nodes run the key-value store): every node's
  store decides each committed command the same way.
"""

from __future__ import annotations

from raftnode.kv.commands import Command, CommandResult
from raftnode.raft import Entry, EntryType


class SafetyViolation(AssertionError):
    pass


class SafetyChecker:
    def __init__(self) -> None:
        self.leaders: dict[int, int] = {}
        self.entries: dict[tuple[int, int], tuple[bytes, int, int]] = {}
        self.committed: dict[int, Entry] = {}
        self.max_committed = 0
        self.max_acked_write_index = 0
        self.exactly_once = ExactlyOnce()

    def on_leader(self, node: int, term: int, log_terms: dict[int, int | None]) -> None:
        """``log_terms`` maps each committed index the leader still holds to its term there."""
        other = self.leaders.setdefault(term, node)
        if other != node:
            raise SafetyViolation(
                f"election safety: nodes {other} and {node} both lead term {term}"
            )
        for index, term_at in log_terms.items():
            expected = self.committed[index].term
            if term_at != expected:
                raise SafetyViolation(
                    f"leader completeness: leader {node} of term {term} has term {term_at} at "
                    f"committed index {index}, expected {expected}"
                )

    def on_persist(self, node: int, entry: Entry, prev_term: int) -> None:
        key = (entry.index, entry.term)
        seen = self.entries.get(key)
        value = (entry.data, prev_term, int(entry.type))
        if seen is None:
            self.entries[key] = value
        elif seen != value:
            raise SafetyViolation(
                f"log matching: node {node} has entry index={entry.index} term={entry.term} "
                f"(data={entry.data[:40]!r}, prev_term={prev_term}) differing from another log's "
                f"(data={seen[0][:40]!r}, prev_term={seen[1]})"
            )

    def on_commit(self, node: int, entry: Entry) -> None:
        known = self.committed.get(entry.index)
        if known is None:
            self.committed[entry.index] = entry
            self.max_committed = max(self.max_committed, entry.index)
        elif known != entry:
            raise SafetyViolation(
                f"committed entries differ at index {entry.index}: node {node} has {entry}, "
                f"another node committed {known}"
            )

    def on_state_machine_apply(self, node: int, index: int, data: bytes, last_write: int) -> None:
        """A node's state machine applies the write at ``index``; it last applied ``last_write``.

        Every committed write must reach the state machine exactly once, in log order, with the
        committed data: none applied twice, none skipped, none different.
        """
        if index <= last_write:
            raise SafetyViolation(
                f"node {node} applied the write at index {index} after the one at {last_write}: "
                "writes must be applied in order, exactly once"
            )
        for skipped in range(last_write + 1, index):
            entry = self.committed.get(skipped)
            if entry is not None and entry.type is EntryType.NORMAL and entry.data:
                raise SafetyViolation(
                    f"node {node} applied index {index} but skipped the committed write at "
                    f"{skipped}"
                )
        known = self.committed.get(index)
        if known is not None and known.data != data:
            raise SafetyViolation(
                f"state machine safety: node {node} applied {data[:40]!r} at index {index}, "
                f"the committed entry there is {known}"
            )

    def on_write_acked(self, index: int) -> None:
        self.max_acked_write_index = max(self.max_acked_write_index, index)

    def on_read(
        self, node: int, started_after_index: int, served_at_applied: int, kind: str
    ) -> None:
        if served_at_applied < started_after_index:
            raise SafetyViolation(
                f"stale {kind} read on node {node}: served at applied index {served_at_applied}, "
                f"but a write at index {started_after_index} was acknowledged before it started"
            )


class ExactlyOnce:
    """What the key-value store did with each committed command, seen from outside the store.

    The nodes' stores report every apply (``on_apply``) with whether it took effect (the store's
    revision moved). Every node applying an index must get the same outcome and the same effect
    (or none).
    """

    def __init__(self) -> None:
        self.applied: dict[int, tuple[str | None, str, bool]] = {}
        """Log index -> (idempotency key, outcome, took effect), as first applied anywhere."""
        self.by_revision: dict[int, tuple[int, str | None]] = {}
        """Store revision -> the index and value of the write that made it."""

    def on_apply(
        self, node: int, index: int, cmd: Command, result: CommandResult, effect: bool
    ) -> None:
        rid = cmd.request_id
        outcome = (rid, result.to_json(), effect)
        seen = self.applied.get(index)
        if seen is not None:
            if seen != outcome:
                raise SafetyViolation(
                    f"node {node} applied index {index} with outcome {outcome}, another node "
                    f"with {seen}: the store must decide the same way everywhere"
                )
            return
        self.applied[index] = outcome
        if effect:
            self.by_revision[result.revision] = (index, cmd.value)
