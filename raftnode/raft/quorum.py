"""Majority arithmetic: small pure functions over a set of voters."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from enum import Enum


class VoteResult(Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def majority(voter_count: int) -> int:
    return voter_count // 2 + 1


def committed_index(voters: Collection[int], acked: Callable[[int], int]) -> int:
    """The largest index acknowledged by a majority of ``voters`` (0 with no voters)."""
    if not voters:
        return 0
    values = sorted((acked(v) for v in voters), reverse=True)
    return values[majority(len(values)) - 1]


def vote_result(voters: Collection[int], votes: Mapping[int, bool]) -> VoteResult:
    """Tally granted and rejected votes of ``voters``; others' answers do not count."""
    if not voters:
        return VoteResult.LOST
    need = majority(len(voters))
    granted = sum(1 for v in voters if votes.get(v) is True)
    rejected = sum(1 for v in voters if votes.get(v) is False)
    if granted >= need:
        return VoteResult.WON
    if rejected > len(voters) - need:
        return VoteResult.LOST
    return VoteResult.PENDING


def has_quorum(voters: Collection[int], active: Callable[[int], bool]) -> bool:
    return bool(voters) and sum(1 for v in voters if active(v)) >= majority(len(voters))
