"""The simulation's transaction checks fail a store that applies a transaction in part or at
more than one revision (and pass the real one: ``test_exactly_once``)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from raftnode.kv.commands import KeyRevisions, TxnOp, TxnOpResult
from raftnode.kv.store import KeyValueStore
from tests.sim.checker import SafetyViolation
from tests.sim.cluster import Simulation

SEED = 2


def _run() -> Simulation:
    logging.getLogger("raftnode").setLevel(logging.CRITICAL + 1)
    sim = Simulation(SEED, size=3, kv_store=True)
    sim.run()
    return sim


def test_the_seed_applies_transactions() -> None:
    sim = _run()
    assert sim.checker.txns.applied > 0 and sim.checker.txns.succeeded > 0


def test_a_store_that_applies_half_a_transaction_fails_the_simulation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    txn_op = KeyValueStore._txn_op

    def half(self: KeyValueStore, op: TxnOp, rev: int, rows: Any) -> TxnOpResult:
        if op.op == "put" and op.key == "t1":
            # Answers as if written, never writes it.
            return TxnOpResult("put", op.key, False, None, KeyRevisions(rev, rev, 1))
        return txn_op(self, op, rev, rows)

    monkeypatch.setattr(KeyValueStore, "_txn_op", half)
    with pytest.raises(SafetyViolation, match="applied in part"):
        _run()


def test_a_store_that_gives_each_write_its_own_revision_fails_the_simulation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    txn_op = KeyValueStore._txn_op

    def one_revision_per_write(self: KeyValueStore, op: TxnOp, rev: int, rows: Any) -> TxnOpResult:
        if op.op == "put":
            self._revision += 1
            return txn_op(self, op, self._revision, rows)
        return txn_op(self, op, rev, rows)

    monkeypatch.setattr(KeyValueStore, "_txn_op", one_revision_per_write)
    with pytest.raises(SafetyViolation, match=r"not at the txn.s|one transaction is one revision"):
        _run()
