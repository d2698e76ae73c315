"""Majority arithmetic: commit index, vote tallies, quorum contact."""

from __future__ import annotations

import pytest

from raftnode.raft.quorum import VoteResult, committed_index, has_quorum, majority, vote_result


@pytest.mark.parametrize(("voters", "needed"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)])
def test_majority(voters: int, needed: int) -> None:
    assert majority(voters) == needed


def test_committed_index_is_what_a_majority_acknowledged() -> None:
    acked = {1: 10, 2: 7, 3: 3}
    assert committed_index({1, 2, 3}, acked.__getitem__) == 7
    acked = {1: 10, 2: 7, 3: 3, 4: 2, 5: 9}
    assert committed_index(set(acked), acked.__getitem__) == 7
    assert committed_index({1, 2, 3, 4}, {1: 5, 2: 5, 3: 1, 4: 0}.__getitem__) == 1


def test_committed_index_without_voters_is_zero() -> None:
    assert committed_index(set(), lambda v: 100) == 0


def test_vote_result_counts_only_voters() -> None:
    voters = {1, 2, 3}
    assert vote_result(voters, {1: True}) is VoteResult.PENDING
    assert vote_result(voters, {1: True, 2: True}) is VoteResult.WON
    assert vote_result(voters, {1: True, 9: True, 8: True}) is VoteResult.PENDING
    assert vote_result(voters, {2: False, 3: False}) is VoteResult.LOST
    assert vote_result(voters, {1: True, 2: False}) is VoteResult.PENDING
    assert vote_result(set(), {1: True}) is VoteResult.LOST


def test_an_even_cluster_is_lost_once_half_reject() -> None:
    voters = {1, 2, 3, 4}
    assert vote_result(voters, {1: True, 2: True, 3: False}) is VoteResult.PENDING
    assert vote_result(voters, {1: True, 2: False, 3: False}) is VoteResult.LOST


def test_has_quorum() -> None:
    assert has_quorum({1, 2, 3}, lambda v: v != 3)
    assert not has_quorum({1, 2, 3}, lambda v: v == 1)
    assert not has_quorum(set(), lambda v: True)
