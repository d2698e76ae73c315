"""The simulation's exactly-once check (``tests.sim.checker.ExactlyOnce``) catches what it is
there for: a keyed write taking effect twice, a node deciding differently, an answer that is not
the first outcome; and on a simulated cluster of real key-value stores, a store that ignores
idempotency keys fails the run."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest

from raftnode.kv.commands import Command, CommandResult, Txn, decode_entry
from raftnode.kv.store import KeyValueStore
from tests.sim.checker import ExactlyOnce, SafetyViolation
from tests.sim.cluster import Simulation

PUT = Command("put", "k", "v", request_id="r1", stamp=1.0)
FIRST = CommandResult(ok=True, revision=1)


def test_a_retry_absorbed_with_the_first_outcome_passes() -> None:
    check = ExactlyOnce()
    check.on_apply(1, 5, PUT, FIRST, effect=True)
    replay = CommandResult.replay_of(FIRST.to_json())
    check.on_apply(1, 7, PUT, replay, effect=False)
    check.on_apply(2, 7, PUT, replay, effect=False)
    assert check.on_answer("r1", replay) == 5
    assert check.duplicates == [(5, 7)] and check.replayed_answers == 1


def test_a_retry_taking_effect_again_is_a_double_apply() -> None:
    check = ExactlyOnce()
    check.on_apply(1, 5, PUT, FIRST, effect=True)
    with pytest.raises(SafetyViolation, match="double apply"):
        check.on_apply(1, 7, PUT, CommandResult(ok=True, revision=2), effect=True)


def test_a_node_that_lost_the_first_outcome_is_caught() -> None:
    check = ExactlyOnce()
    check.on_apply(1, 5, PUT, FIRST, effect=True)
    check.on_apply(1, 7, PUT, CommandResult.replay_of(FIRST.to_json()), effect=False)
    with pytest.raises(SafetyViolation, match="double apply"):
        check.on_apply(2, 7, PUT, CommandResult(ok=True, revision=2), effect=True)


def test_an_answer_other_than_the_first_outcome_is_caught() -> None:
    check = ExactlyOnce()
    check.on_apply(1, 5, PUT, FIRST, effect=True)
    with pytest.raises(SafetyViolation, match="first outcome"):
        check.on_answer("r1", CommandResult(ok=True, revision=2))
    with pytest.raises(SafetyViolation, match="never applied"):
        check.on_answer("r2", FIRST)


SEED = 2


def _run(seed: int) -> None:
    logging.getLogger("raftnode").setLevel(logging.CRITICAL + 1)
    Simulation(seed, size=3, kv_store=True).run()


def test_a_simulated_cluster_of_stores_passes() -> None:
    _run(SEED)


def test_a_store_ignoring_idempotency_keys_fails_the_simulation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    apply = KeyValueStore.apply

    def apply_ignoring_keys(self: KeyValueStore, index: int, data: bytes) -> Any:
        cmd = decode_entry(data)
        if isinstance(cmd, Command):
            return apply(self, index, Command(cmd.op, cmd.key, cmd.value).encode())
        if isinstance(cmd, Txn):
            return apply(self, index, dataclasses.replace(cmd, request_id=None).encode())
        return apply(self, index, data)

    monkeypatch.setattr(KeyValueStore, "apply", apply_ignoring_keys)
    with pytest.raises(SafetyViolation, match="double apply"):
        _run(SEED)
