"""RaftLog: positions, term lookups, the AppendEntries receiver rule, truncation, compaction."""

from __future__ import annotations

import pytest

from raftnode.raft.log import RaftLog
from raftnode.raft.types import Entry


def entries(first: int, last: int, term: int = 1, data: bytes = b"") -> list[Entry]:
    return [Entry(term=term, index=i, data=data) for i in range(first, last + 1)]


def test_an_empty_log_starts_after_its_offset() -> None:
    log = RaftLog(offset=10, offset_term=3)
    assert (log.first_index(), log.last_index(), log.last_term()) == (11, 10, 3)
    assert log.term(10) == 3
    assert log.term(9) is None and log.term(11) is None
    assert log.committed == log.applied == 10
    assert log.unstable_entries() == []


def test_entries_at_or_below_the_offset_are_skipped_and_gaps_refused() -> None:
    log = RaftLog(offset=2, offset_term=1, entries=entries(1, 5))
    assert log.first_index() == 3 and log.last_index() == 5
    with pytest.raises(ValueError, match="expected 2, got 3"):
        RaftLog(entries=[Entry(1, 1), Entry(1, 3)])


def test_loaded_entries_are_stable_and_appended_ones_unstable() -> None:
    log = RaftLog(entries=entries(1, 3))
    assert log.unstable_entries() == []
    log.append(entries(4, 5, term=2))
    assert [e.index for e in log.unstable_entries()] == [4, 5]
    log.mark_handed_to_storage(4)
    assert [e.index for e in log.unstable_entries()] == [5]
    log.mark_handed_to_storage(2)  # never moves backwards
    assert [e.index for e in log.unstable_entries()] == [5]


def test_append_refuses_a_gap_and_overwriting_committed_entries() -> None:
    log = RaftLog(entries=entries(1, 3))
    with pytest.raises(AssertionError, match="gap"):
        log.append(entries(5, 5))
    log.commit_to(2)
    with pytest.raises(AssertionError, match="committed"):
        log.append(entries(2, 2, term=9))


def test_overwriting_a_stable_suffix_hands_the_new_suffix_to_storage() -> None:
    log = RaftLog(entries=entries(1, 5))
    log.append(entries(3, 4, term=2))
    assert log.last_index() == 4
    assert [(e.index, e.term) for e in log.unstable_entries()] == [(3, 2), (4, 2)]


def test_maybe_append_rejects_a_mismatching_previous_entry_and_changes_nothing() -> None:
    log = RaftLog(entries=entries(1, 3))
    assert log.maybe_append(3, 2, 3, entries(4, 4, term=2)) == (None, None)
    assert log.last_index() == 3 and log.committed == 0


def test_maybe_append_skips_present_entries_and_truncates_at_the_first_conflict() -> None:
    log = RaftLog(entries=entries(1, 3) + entries(4, 5, term=2))
    # A duplicate delivery writes nothing but still advances the commit index.
    assert log.maybe_append(1, 1, 3, entries(2, 3)) == (3, None)
    assert log.committed == 3 and log.last_index() == 5
    # A new leader's entries from index 4 on replace the old term-2 suffix.
    assert log.maybe_append(3, 1, 5, entries(4, 4, term=3)) == (4, 4)
    assert log.last_index() == 4 and log.term(4) == 3
    assert log.committed == 4  # never beyond the last new entry


def test_commit_only_moves_forward_and_never_past_the_log() -> None:
    log = RaftLog(entries=entries(1, 3))
    assert log.commit_to(2) is True
    assert log.commit_to(1) is False and log.committed == 2
    with pytest.raises(AssertionError, match="beyond last index"):
        log.commit_to(4)


def test_slice_honours_bounds_and_byte_budget_but_returns_at_least_one() -> None:
    log = RaftLog(offset=2, offset_term=1, entries=entries(3, 8, data=b"x" * 100))
    assert [e.index for e in log.slice(4, 7)] == [4, 5, 6]
    assert [e.index for e in log.slice(4, 9, max_bytes=250)] == [4, 5]
    assert [e.index for e in log.slice(4, 9, max_bytes=1)] == [4]
    with pytest.raises(IndexError, match="compacted"):
        log.slice(2, 5)


def test_up_to_date_compares_last_term_then_last_index() -> None:
    log = RaftLog(entries=entries(1, 3) + entries(4, 5, term=2))
    assert log.is_up_to_date(1, 3)  # higher last term wins even when shorter
    assert log.is_up_to_date(5, 2) and log.is_up_to_date(6, 2)
    assert not log.is_up_to_date(4, 2)
    assert not log.is_up_to_date(9, 1)


def test_find_conflict_by_term_skips_a_whole_term() -> None:
    log = RaftLog(entries=entries(1, 2) + entries(3, 6, term=3) + entries(7, 8, term=5))
    assert log.find_conflict_by_term(8, 4) == 6
    assert log.find_conflict_by_term(8, 2) == 2
    assert log.find_conflict_by_term(20, 5) == 8  # clamped to the last index
    assert log.find_conflict_by_term(8, 0) == 0


def test_compact_drops_applied_entries_and_keeps_the_boundary_term() -> None:
    log = RaftLog(entries=entries(1, 3) + entries(4, 6, term=2))
    log.commit_to(5)
    log.applied = 5
    with pytest.raises(AssertionError, match="beyond applied"):
        log.compact(6)
    log.compact(4)
    assert log.first_index() == 5 and log.term(4) == 2 and log.term(3) is None
    assert log.match_term(4, 2)  # the append after the boundary can still be checked
    log.compact(2)  # already compacted: nothing happens
    assert log.first_index() == 5


def test_restore_replaces_everything_with_the_snapshot_position() -> None:
    log = RaftLog(entries=entries(1, 3))
    log.restore(50, 7)
    assert (log.last_index(), log.last_term(), log.committed, log.applied) == (50, 7, 50, 50)
    assert log.unstable_entries() == []
    log.append(entries(51, 51, term=7))
    assert [e.index for e in log.unstable_entries()] == [51]
