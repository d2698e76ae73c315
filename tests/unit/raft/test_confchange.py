"""The membership rules as a table: configuration + operation -> next configuration or refusal."""

from __future__ import annotations

import pytest

from raftnode.raft.confchange import (
    LearnerProgress,
    catch_up_refusal,
    check_addresses_unused,
    check_prev_index,
    next_configuration,
)
from raftnode.raft.errors import ConfChangeError
from raftnode.raft.types import ConfChangeOp, ConfState

ADD_VOTER, ADD_LEARNER, REMOVE = (
    ConfChangeOp.ADD_VOTER,
    ConfChangeOp.ADD_LEARNER,
    ConfChangeOp.REMOVE,
)


def conf(voters: set[int], learners: set[int] | None = None) -> ConfState:
    return ConfState(frozenset(voters), frozenset(learners or ()))


ALLOWED = [
    (conf({1, 2, 3}), ADD_LEARNER, 4, conf({1, 2, 3}, {4})),
    (conf({1, 2, 3}, {4}), ADD_VOTER, 4, conf({1, 2, 3, 4})),
    (conf({1, 2, 3}, {4}), REMOVE, 4, conf({1, 2, 3})),
    (conf({1, 2, 3}), REMOVE, 1, conf({2, 3})),
    (conf({1, 2}, {3}), REMOVE, 1, conf({2}, {3})),
    (conf({1}, {2, 3}), ADD_VOTER, 3, conf({1, 3}, {2})),
]


@pytest.mark.parametrize(("before", "op", "node", "after"), ALLOWED)
def test_allowed_changes(before: ConfState, op: ConfChangeOp, node: int, after: ConfState) -> None:
    assert next_configuration(before, op, node) == after


REFUSED = [
    # The bug this guards: promoting a stranger made a voter that never answers, forever.
    (conf({1, 2, 3}), ADD_VOTER, 97, "not a learner"),
    (conf({1, 2, 3}), ADD_VOTER, 2, "already a voter"),
    (conf({1, 2, 3}, {4}), ADD_LEARNER, 4, "already a member"),
    (conf({1, 2, 3}), ADD_LEARNER, 3, "already a member"),
    (conf({1, 2, 3}), REMOVE, 9, "not a member"),
    (conf({1}, {2}), REMOVE, 1, "last voter"),
    (conf({1}), REMOVE, 1, "last voter"),
    (conf({1, 2, 3}), ADD_LEARNER, 0, "positive"),
    (conf({1, 2, 3}), ADD_LEARNER, -4, "positive"),
    (conf({1, 2, 3}), ConfChangeOp.BOOTSTRAP, 4, "bootstrap"),
]


@pytest.mark.parametrize(("before", "op", "node", "why"), REFUSED)
def test_refused_changes(before: ConfState, op: ConfChangeOp, node: int, why: str) -> None:
    with pytest.raises(ConfChangeError, match=why):
        next_configuration(before, op, node)


def test_promotion_waits_for_the_catch_up_rule() -> None:
    c = conf({1, 2, 3}, {4})
    with pytest.raises(ConfChangeError, match="behind"):
        next_configuration(c, ADD_VOTER, 4, catch_up="learner 4 is 50 entries behind")
    # The catch-up answer does not matter to other operations.
    assert next_configuration(c, REMOVE, 4, catch_up="behind") == conf({1, 2, 3})


CATCH_UP = [
    (None, 100, 10, "not caught up"),
    (LearnerProgress(0, True), 100, 10, "not caught up"),
    (LearnerProgress(95, False), 100, 10, "not caught up"),
    (LearnerProgress(80, True), 100, 10, "20 entries behind"),
    (LearnerProgress(90, True), 100, 10, None),
    (LearnerProgress(100, True), 100, 0, None),
]


@pytest.mark.parametrize(("progress", "last", "max_lag", "why"), CATCH_UP)
def test_catch_up_rule(
    progress: LearnerProgress | None, last: int, max_lag: int, why: str | None
) -> None:
    answer = catch_up_refusal(4, progress, last, max_lag)
    if why is None:
        assert answer is None
    else:
        assert answer is not None and why in answer


def test_prev_index() -> None:
    check_prev_index(None, 7)
    check_prev_index(7, 7)
    with pytest.raises(ConfChangeError, match="changed since index 6"):
        check_prev_index(6, 7)


def test_addresses_in_use() -> None:
    in_use = {1: {"peer": "10.0.0.1:9080"}, 2: {"peer": "10.0.0.2:9080"}}
    check_addresses_unused(4, {"peer": "10.0.0.4:9080"}, in_use)
    check_addresses_unused(2, {"peer": "10.0.0.2:9080"}, in_use)  # its own address
    with pytest.raises(ConfChangeError, match="already used by member 2"):
        check_addresses_unused(4, {"peer": "10.0.0.2:9080"}, in_use)
