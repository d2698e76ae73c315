"""ReadTracker: ReadIndex rounds, their release by a quorum, and the leader lease start."""

from __future__ import annotations

from raftnode.raft.read_only import ReadTracker

VOTERS = frozenset({1, 2, 3})
ME = 1


def test_a_read_waits_for_a_round_sent_after_it_arrived() -> None:
    t = ReadTracker()
    t.start_round(now=1.0)  # round 1, before the read
    t.add(requester=ME, request_id=7, index=40)
    assert t.round_wanted
    t.ack(2, 1)
    assert t.release(VOTERS, ME) == []  # round 1 predates the read
    assert t.start_round(now=2.0) == 2
    assert not t.round_wanted
    t.ack(2, 2)
    (read,) = t.release(VOTERS, ME)
    assert (read.requester, read.request_id, read.index) == (ME, 7, 40)
    assert t.release(VOTERS, ME) == []  # released once


def test_reads_are_released_in_arrival_order_and_only_as_far_as_the_quorum_round() -> None:
    t = ReadTracker()
    t.add(2, 1, 10)
    t.start_round(1.0)
    t.add(3, 2, 11)
    t.start_round(2.0)
    t.ack(3, 1)
    assert [r.request_id for r in t.release(VOTERS, ME)] == [1]
    t.ack(2, 2)
    assert [r.request_id for r in t.release(VOTERS, ME)] == [2]


def test_old_and_out_of_order_acks_do_not_move_a_peer_backwards() -> None:
    t = ReadTracker()
    for now in (1.0, 2.0, 3.0):
        t.start_round(now)
    t.ack(2, 3)
    t.ack(2, 1)
    assert t.quorum_round(VOTERS, ME) == 3
    assert not t.has_unacked_round(VOTERS, ME)


def test_lease_starts_when_the_newest_quorum_round_was_sent() -> None:
    t = ReadTracker()
    assert t.lease_start(VOTERS, ME) is None
    t.start_round(5.0)
    t.start_round(6.0)
    assert t.has_unacked_round(VOTERS, ME)
    assert t.lease_start(VOTERS, ME) is None  # no peer answered yet
    t.ack(3, 1)
    assert t.lease_start(VOTERS, ME) == 5.0
    t.ack(2, 2)
    assert t.lease_start(VOTERS, ME) == 6.0


def test_a_lone_voter_is_its_own_quorum() -> None:
    t = ReadTracker()
    t.add(ME, 1, 3)
    t.start_round(1.0)
    assert [r.request_id for r in t.release(frozenset({ME}), ME)] == [1]


def test_drain_hands_back_every_pending_read() -> None:
    t = ReadTracker()
    t.add(2, 1, 10)
    t.add(3, 2, 10)
    assert [r.request_id for r in t.drain()] == [1, 2]
    t.start_round(1.0)
    t.ack(2, 1)
    assert t.release(VOTERS, ME) == []
