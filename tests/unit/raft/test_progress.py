"""Progress and Inflights: the leader's view of one follower (probe, replicate, snapshot)."""

from __future__ import annotations

from raftnode.raft.progress import Inflights, Progress, ProgressState
from raftnode.raft.types import ConfState, Snapshot, SnapshotMeta


def snapshot_at(index: int) -> Snapshot:
    return Snapshot(SnapshotMeta(index=index, term=1, conf=ConfState(frozenset({1, 2}))), b"")


def test_inflights_fill_up_and_free_by_acknowledged_index() -> None:
    window = Inflights(capacity=3)
    for last in (5, 10, 15):
        window.add(last)
    assert window.full()
    window.free_up_to(9)
    assert len(window) == 2 and not window.full()
    window.free_up_to(100)
    assert len(window) == 0


def test_a_probe_sends_one_append_then_waits_for_its_answer() -> None:
    p = Progress(next_index=11, max_inflight=4)
    assert p.state is ProgressState.PROBE and not p.is_paused()
    p.sent_entries(15)
    assert p.is_paused() and p.next == 11  # probing does not move next optimistically
    assert p.maybe_update(12)
    assert not p.is_paused() and (p.match, p.next) == (12, 13)


def test_replicate_streams_optimistically_until_the_window_is_full() -> None:
    p = Progress(next_index=1, max_inflight=2)
    p.maybe_update(5)
    p.become_replicate()
    assert p.next == 6
    p.sent_entries(8)
    assert p.next == 9 and not p.is_paused()
    p.sent_entries(10)
    assert p.is_paused()
    p.maybe_update(8)
    p.inflights.free_up_to(8)
    assert not p.is_paused()


def test_an_old_acknowledgement_does_not_move_match_back() -> None:
    p = Progress(next_index=1, max_inflight=4)
    assert p.maybe_update(7)
    assert not p.maybe_update(3)
    assert (p.match, p.next) == (7, 8)


def test_replicate_rejection_falls_back_to_match_and_ignores_stale_ones() -> None:
    p = Progress(next_index=1, max_inflight=4)
    p.maybe_update(5)
    p.become_replicate()
    p.sent_entries(9)
    assert not p.maybe_decrease_to(rejected=4, match_hint=0)  # at or below match: stale
    assert p.next == 10
    assert p.maybe_decrease_to(rejected=8, match_hint=0)
    assert p.next == 6


def test_probe_rejection_uses_the_follower_hint_but_not_below_match() -> None:
    p = Progress(next_index=21, max_inflight=4)
    p.maybe_update(3)
    p.next = 21
    p.sent_entries(25)
    assert not p.maybe_decrease_to(rejected=15, match_hint=2)  # not the probe we sent
    assert p.maybe_decrease_to(rejected=20, match_hint=9)
    assert p.next == 10 and not p.probe_sent
    p.sent_entries(12)
    assert p.maybe_decrease_to(rejected=9, match_hint=0)
    assert p.next == 4  # match + 1, never lower


def test_snapshot_pauses_replication_until_it_is_done() -> None:
    p = Progress(next_index=5, max_inflight=4)
    p.maybe_update(4)
    p.become_snapshot(snapshot_at(100))
    assert p.state is ProgressState.SNAPSHOT and p.is_paused()
    p.become_probe()
    assert p.next == 101 and p.snapshot is None  # resumes after the snapshot's index
    assert not p.is_paused()


def test_leaving_replicate_forgets_in_flight_appends() -> None:
    p = Progress(next_index=1, max_inflight=1)
    p.become_replicate()
    p.sent_entries(3)
    assert p.is_paused()
    p.become_probe()
    assert len(p.inflights) == 0 and p.next == 1 and not p.is_paused()
