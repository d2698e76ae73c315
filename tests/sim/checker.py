"""Raft's safety properties, checked incrementally while a simulation runs.

- Election Safety: at most one leader per term.
- Log Matching: two logs holding an entry with the same index and term agree on its data and on
  the term of the entry before it (which, by induction, makes their prefixes identical).
- Leader Completeness: a new leader's log holds every entry committed so far.
- State Machine Safety: every node applies the same entry at each index, in order, exactly once.
- Linearizable reads: a read answered at a node reflects every write acknowledged before the read
  started (the node's applied index is at least the index of each such write).
- Exactly-once keyed writes (``ExactlyOnce``, when the nodes run the key-value store): a command
  carrying an idempotency key takes effect at most once however many times it is in the log, and
  every answer a client gets for the key is the outcome of its first application.
- Atomic transactions (``TxnAtomicity``, with the key-value store): a transaction applies as a
  whole at one revision (one more than before when its branch writes, none when it only reads),
  every key it writes carries that revision, its gets see the state at its point in the log, and
  the pair of keys only transactions write is never seen half-written by any node.
"""

from __future__ import annotations

from raftnode.kv.commands import (
    ApplyResult,
    Command,
    KeyRevisions,
    Txn,
    TxnResult,
)
from raftnode.kv.commands import Entry as KvEntry
from raftnode.raft import Entry, EntryType


class SafetyViolation(AssertionError):
    pass


class SafetyChecker:
    def __init__(self) -> None:
        self.leases = LeaseExpiry()
        self.leaders: dict[int, int] = {}
        self.entries: dict[tuple[int, int], tuple[bytes, int, int]] = {}
        self.committed: dict[int, Entry] = {}
        self.max_committed = 0
        self.max_acked_write_index = 0
        self.exactly_once = ExactlyOnce()
        self.txns = TxnAtomicity()

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
    revision moved); clients report every answer they got for an idempotency key
    (``on_answer``). The store's own dedup bookkeeping is never consulted: the checks are
    - every node applying an index gets the same outcome and the same effect (or none);
    - the first committed entry carrying a key decides its outcome; every later entry with the
      same key (a client's retry, a duplicate proposal) takes no effect and yields that outcome;
    - every answer a client gets for the key equals the first outcome.
    """

    def __init__(self) -> None:
        self.applied: dict[int, tuple[str | None, str, bool]] = {}
        """Log index -> (idempotency key, outcome, took effect), as first applied anywhere."""
        self.first: dict[str, tuple[int, ApplyResult]] = {}
        """Idempotency key -> index of its first committed entry and that entry's outcome."""
        self.by_revision: dict[int, tuple[int, str | None]] = {}
        """Store revision -> the index and value of the write that made it."""
        self.duplicates: list[tuple[int, int]] = []
        """(first index, later index) of each committed entry whose key had applied before: the
        retries the store had to absorb."""
        self.answers = 0
        self.replayed_answers = 0

    def on_apply(
        self,
        node: int,
        index: int,
        cmd: KvEntry,
        result: ApplyResult,
        effect: bool,
    ) -> None:
        rid = cmd.request_id
        outcome = (rid, result.to_json(), effect)
        seen = self.applied.get(index)
        if seen is not None:
            if seen != outcome:
                self._check_retry(node, index, rid, result, effect)
                raise SafetyViolation(
                    f"node {node} applied index {index} with outcome {outcome}, another node "
                    f"with {seen}: the store must decide the same way everywhere"
                )
            return
        self.applied[index] = outcome
        if effect:
            value = cmd.value if isinstance(cmd, Command) else None
            self.by_revision[result.revision] = (index, value)
        if rid is None:
            return
        if rid in self.first:
            self.duplicates.append((self.first[rid][0], index))
            self._check_retry(node, index, rid, result, effect)
        elif result.replayed:
            raise SafetyViolation(
                f"node {node} replayed key {rid!r} at index {index}, its first entry"
            )
        else:
            self.first[rid] = (index, result)

    def _check_retry(
        self, node: int, index: int, rid: str | None, result: ApplyResult, effect: bool
    ) -> None:
        """An entry with a key that applied at an earlier index: no effect, the first outcome."""
        first = self.first.get(rid) if rid is not None else None
        if first is None or first[0] == index:
            return
        first_index, first_result = first
        if index < first_index:
            raise SafetyViolation(f"key {rid!r} applied at {index} after {first_index}")
        if effect:
            raise SafetyViolation(
                f"double apply: key {rid!r} took effect at index {first_index} and again at "
                f"{index} on node {node}"
            )
        if result.to_json() != first_result.to_json():
            raise SafetyViolation(
                f"key {rid!r} re-applied at index {index} on node {node} yielded "
                f"{result.to_json()}, its first outcome (index {first_index}) was "
                f"{first_result.to_json()}"
            )

    def on_answer(self, rid: str, result: ApplyResult) -> int:
        """A client got ``result`` for key ``rid``; returns the index where the key applied."""
        first = self.first.get(rid)
        if first is None:
            raise SafetyViolation(f"a client got {result} for key {rid!r}, which never applied")
        first_index, first_result = first
        if result.to_json() != first_result.to_json():
            raise SafetyViolation(
                f"a client got {result.to_json()} for key {rid!r}, whose first outcome (index "
                f"{first_index}) was {first_result.to_json()}"
            )
        self.answers += 1
        self.replayed_answers += result.replayed
        return first_index


class LeaseExpiry:
    """A lease never expires through the log before its TTL has passed since the last grant or
    keep-alive a client sent and got answered (the client counts from when it sent it)."""

    def __init__(self) -> None:
        self.held_until: dict[int, float] = {}
        self.expired_at: dict[int, float] = {}
        self.acks = 0

    def on_ack(self, lease: int, sent: float, ttl: int) -> None:
        until = sent + ttl
        self.acks += 1
        expired = self.expired_at.get(lease)
        if expired is not None and expired < until:
            raise SafetyViolation(
                f"lease {lease} was answered alive until {until:.3f} (sent at {sent:.3f}, TTL "
                f"{ttl} s) but its expiry applied at {expired:.3f}"
            )
        self.held_until[lease] = max(self.held_until.get(lease, 0.0), until)

    def on_expire(self, node: int, lease: int, now: float) -> None:
        self.expired_at.setdefault(lease, now)
        until = self.held_until.get(lease)
        if until is not None and now < until:
            raise SafetyViolation(
                f"node {node} applied the expiry of lease {lease} at {now:.3f}, before "
                f"{until:.3f}: the TTL from the last keep-alive a client got answered"
            )


TXN_KEYS = ("t0", "t1")
"""The keys only transactions write, always both in one transaction, to the same value."""
PairState = tuple[tuple[str, KeyRevisions] | None, ...]
"""Each of ``TXN_KEYS`` as a node's store holds it: (value, revisions), or None when absent."""


class TxnAtomicity:
    """What each applied transaction did, seen from outside the store (see the module
    docstring); ``applied`` and ``succeeded`` count them (first application of each index)."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.applied = 0
        self.succeeded = 0

    def on_txn(
        self,
        node: int,
        index: int,
        txn: Txn,
        result: TxnResult,
        revision_before: int,
        revision_after: int,
    ) -> None:
        if index not in self.seen:
            self.seen.add(index)
            self.applied += 1
            self.succeeded += result.succeeded and result.error is None and not result.replayed
        if result.replayed or result.error is not None:
            if revision_after != revision_before:
                raise SafetyViolation(
                    f"node {node}: txn at index {index} ({result.error or 'replayed'}) moved the "
                    f"revision from {revision_before} to {revision_after}"
                )
            return
        branch = txn.success if result.succeeded else txn.failure
        writes = any(op.op == "put" for op in branch) or any(
            r.op == "delete" and r.found for r in result.results
        )
        expected = revision_before + 1 if writes else revision_before
        if result.revision != expected or revision_after != expected:
            raise SafetyViolation(
                f"node {node}: txn at index {index} went from revision {revision_before} to "
                f"{revision_after} (answered {result.revision}); one transaction is one "
                f"revision ({expected})"
            )
        if len(result.results) != len(branch):
            raise SafetyViolation(f"node {node}: txn at index {index} ran part of its branch")
        written: dict[str, str] = {}
        for op, r in zip(branch, result.results, strict=True):
            if op.op == "put":
                assert op.value is not None
                written[op.key] = op.value
                if r.revisions.mod_revision != result.revision:
                    raise SafetyViolation(
                        f"node {node}: txn at index {index} wrote {op.key} at revision "
                        f"{r.revisions.mod_revision}, not at the txn's {result.revision}"
                    )
            elif op.op == "get" and op.key in written and r.value != written[op.key]:
                raise SafetyViolation(
                    f"node {node}: a get in the txn at index {index} saw {r.value!r} for "
                    f"{op.key}, not the {written[op.key]!r} written before it in the txn"
                )

    def check_pair(self, node: int, index: int, pair: PairState) -> None:
        """The transaction-only keys are both absent or equal in value and revisions."""
        first = pair[0]
        if any(p != first for p in pair[1:]):
            raise SafetyViolation(
                f"node {node} after index {index}: a transaction applied in part: "
                + ", ".join(f"{k}={p}" for k, p in zip(TXN_KEYS, pair, strict=True))
            )
