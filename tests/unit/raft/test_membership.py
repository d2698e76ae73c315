"""MembershipTracker: the latest configuration in the log is the one in force."""

from __future__ import annotations

from raftnode.raft.membership import MembershipTracker
from raftnode.raft.types import ConfChange, ConfChangeOp, ConfState, Entry, EntryType

THREE = ConfState(voters=frozenset({1, 2, 3}))
FOUR = ConfState(voters=frozenset({1, 2, 3}), learners=frozenset({4}))
FIVE = ConfState(voters=frozenset({1, 2, 3, 4}))


def conf_entry(index: int, op: ConfChangeOp, node: int, result: ConfState) -> Entry:
    change = ConfChange(op, node, result)
    return Entry(term=1, index=index, type=EntryType.CONF_CHANGE, data=change.encode())


def tracker() -> MembershipTracker:
    t = MembershipTracker(THREE, base_index=1)
    assert t.observe(
        [
            Entry(1, 2),
            conf_entry(3, ConfChangeOp.ADD_LEARNER, 4, FOUR),
            Entry(1, 4),
            conf_entry(5, ConfChangeOp.ADD_VOTER, 4, FIVE),
        ]
    )
    return t


def test_a_change_takes_effect_when_appended() -> None:
    t = tracker()
    assert t.current == FIVE
    assert t.last_change_index() == 5


def test_normal_entries_change_nothing() -> None:
    t = MembershipTracker(THREE, base_index=1)
    assert not t.observe([Entry(1, 2), Entry(1, 3)])
    assert t.current == THREE and t.last_change_index() == 1


def test_configuration_at_an_index() -> None:
    t = tracker()
    assert t.at(1) == THREE
    assert t.at(2) == THREE
    assert t.at(3) == FOUR
    assert t.at(4) == FOUR
    assert t.at(99) == FIVE


def test_truncating_an_uncommitted_change_reverts_it() -> None:
    t = tracker()
    t.truncate_from(5)
    assert t.current == FOUR and t.last_change_index() == 3
    t.truncate_from(2)
    assert t.current == THREE and t.last_change_index() == 1


def test_compaction_folds_old_changes_into_the_base() -> None:
    t = tracker()
    t.compact(4)
    assert t.current == FIVE
    assert t.at(4) == FOUR  # the base now is the configuration at index 3
    t.truncate_from(5)
    assert t.current == FOUR and t.last_change_index() == 3


def test_reset_to_a_snapshot_configuration() -> None:
    t = tracker()
    t.reset(THREE, base_index=100)
    assert t.current == THREE and t.last_change_index() == 100
