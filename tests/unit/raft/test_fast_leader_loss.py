"""Fast leader-loss detection (issue 11): ``RaftCore.report_peer_lost``.

The rule: a follower told that its link to its leader is lost (stream reset, reconnect refused)
campaigns once it has not heard from the leader for ``leader_loss_quiet_ticks``, with its
(pre)vote requests marked ``leader_lost``; a voter grants such a request despite leader
stickiness only when its own link to its leader is reported lost too and it has not heard from
that leader for the same quiet period. The leader lease is shorter than that quiet period.
"""

from __future__ import annotations

import pytest

from raftnode.raft import Message, MessageType, Role
from tests.unit.raft.harness import Net, cut, isolate

MT = MessageType


def _dead(node_id: int):
    return isolate(node_id)


def _kill_leader_and_report(net: Net, leader: int, reporters: list[int]) -> None:
    """The leader's process dies: nothing reaches it or leaves it, and the given nodes' links
    to it are reported lost."""
    for node_id in reporters:
        net.cores[node_id].report_peer_lost(leader, net.now)
    net.deliver(drop=_dead(leader))


def _ticks_until_new_leader(net: Net, old: int, limit: int) -> int:
    for ticks in range(1, limit + 1):
        net.tick_all(drop=_dead(old))
        if [i for i in net.leaders() if i != old]:
            return ticks
    raise AssertionError(f"no new leader within {limit} ticks")


def test_fast_leader_loss_elects_after_the_quiet_period_not_an_election_timeout() -> None:
    net = Net(3)
    net.elect(1)
    net.tick_all(2)
    term = net.cores[1].term
    _kill_leader_and_report(net, 1, [2, 3])
    quiet = net.cores[2].cfg.leader_loss_quiet_ticks
    ticks = _ticks_until_new_leader(net, 1, net.cores[2].cfg.election_ticks)
    assert ticks <= quiet + 2 < net.cores[2].cfg.election_ticks
    new = [net.cores[i] for i in net.leaders() if i != 1]
    assert len(new) == 1 and new[0].term == term + 1, "one election, no split vote"


def test_fast_leader_loss_off_waits_for_the_election_timeout() -> None:
    net = Net(3, fast_leader_loss=False)
    net.elect(1)
    net.tick_all(2)
    _kill_leader_and_report(net, 1, [2, 3])
    ticks = _ticks_until_new_leader(net, 1, 4 * net.cores[2].cfg.election_ticks)
    assert ticks >= net.cores[2].cfg.election_ticks


def test_fast_leader_loss_voter_that_still_hears_the_leader_refuses() -> None:
    # One flapping link: node 2's link to leader 1 is reported lost and nothing passes on it,
    # but node 3 still hears node 1. Node 3 must refuse node 2 (stickiness as always): nobody
    # is elected, the term does not move.
    net = Net(3)
    leader = net.elect(1)
    term = leader.term
    net.cores[2].report_peer_lost(1, net.now)
    for _ in range(net.cores[2].cfg.election_ticks - 1):
        net.tick_all(drop=cut(1, 2))
        assert net.leaders() == [1]
        assert all(c.term == term for c in net.cores.values())


def test_fast_leader_loss_needs_the_voters_own_link_lost_too() -> None:
    net = Net(3)
    net.elect(1)
    voter = net.cores[3]
    quiet = voter.cfg.leader_loss_quiet_ticks
    for _ in range(quiet + 1):  # node 3 stops hearing node 1, but its link is not lost
        net.tick(3)
    request = Message(
        MT.PRE_VOTE, to=3, frm=2, term=voter.term + 1, index=voter.last_index,
        log_term=voter.log.last_term(), leader_lost=True,
    )  # fmt: skip
    voter.step(request, net.now)
    assert not voter.ready().messages, "sticky: the voter's own link to the leader is fine"
    voter.report_peer_lost(1, net.now)
    voter.step(request, net.now)
    grants = [m for m in voter.ready().messages if m.type is MT.PRE_VOTE_RESP]
    assert grants and not grants[0].reject


def test_fast_leader_loss_voter_grants_only_after_the_quiet_period() -> None:
    net = Net(3)
    net.elect(1)
    voter = net.cores[3]
    voter.report_peer_lost(1, net.now)

    def request(term: int) -> Message:
        return Message(
            MT.PRE_VOTE, to=3, frm=2, term=term, index=voter.last_index,
            log_term=voter.log.last_term(), leader_lost=True,
        )  # fmt: skip

    net.now += voter.cfg.leader_loss_quiet_seconds / 2
    voter.step(request(voter.term + 1), net.now)
    assert not voter.ready().messages, "heard the leader too recently"
    net.now += voter.cfg.leader_loss_quiet_seconds / 2
    voter.step(request(voter.term + 1), net.now)
    assert any(m.type is MT.PRE_VOTE_RESP and not m.reject for m in voter.ready().messages)
    # An unmarked request (a node that merely timed out) still meets stickiness.
    unmarked = Message(
        MT.PRE_VOTE, to=3, frm=2, term=voter.term + 1, index=voter.last_index,
        log_term=voter.log.last_term(),
    )  # fmt: skip
    voter.step(unmarked, net.now)
    assert not voter.ready().messages


def test_fast_leader_loss_hearing_from_the_leader_clears_the_mark() -> None:
    net = Net(3)
    net.elect(1)
    follower = net.cores[2]
    follower.report_peer_lost(1, net.now)
    net.tick_all()  # a heartbeat from node 1 arrives: it is alive after all
    for _ in range(follower.cfg.leader_loss_quiet_ticks + 2):
        net.tick(2, drop=cut(1, 2))
    assert follower.role is Role.FOLLOWER and follower.leader_id == 1


def test_fast_leader_loss_reachable_again_clears_the_mark() -> None:
    net = Net(3)
    net.elect(1)
    follower = net.cores[2]
    follower.report_peer_lost(1, net.now)
    follower.report_peer_reachable(1, net.now)
    for _ in range(follower.cfg.leader_loss_quiet_ticks + 2):
        net.tick(2, drop=cut(1, 2))
    assert follower.role is Role.FOLLOWER and follower.leader_id == 1


def test_fast_leader_loss_lease_ends_before_any_voter_may_grant_a_fast_vote() -> None:
    # The leader is alive but every link to it is (wrongly) reported lost and nothing passes:
    # a new leader gets elected fast. The old leader's lease must have ended by then, for any
    # read it answered from the lease would miss the new leader's writes.
    net = Net(3)
    old = net.elect(1)
    net.tick_all(2)
    assert old.lease_valid(net.now)
    assert old.cfg.lease_seconds < old.cfg.leader_loss_quiet_seconds
    for node_id in (2, 3):
        net.cores[node_id].report_peer_lost(1, net.now)
    for _ in range(old.cfg.election_ticks):
        net.now += 1.0
        for core in net.cores.values():
            core.tick(net.now)
        net.deliver(drop=isolate(1))
        if [i for i in net.leaders() if i != 1]:
            assert not old.lease_valid(net.now)
            return
    raise AssertionError("the fast path elected nobody")


def test_fast_leader_loss_simultaneous_candidates_do_not_split_the_vote() -> None:
    # Both followers notice at the same tick and pre-vote at once, with equal logs. Each grants
    # the other's pre-vote; if both went on to the real vote, each would vote for itself and
    # nobody would win for an election timeout. The higher id steps back instead.
    net = Net(3)
    leader = net.elect(1)
    net.tick_all(2)
    term = leader.term
    for node_id in (2, 3):
        net.cores[node_id].report_peer_lost(1, net.now)
    net.now += net.cores[2].cfg.leader_loss_quiet_seconds + 1.0
    for node_id in (2, 3):
        net.cores[node_id].tick(net.now)  # both campaign before either message is delivered
        net.collect(node_id)
    assert all(net.cores[i].role is Role.PRE_CANDIDATE for i in (2, 3))
    net.deliver(drop=_dead(1))
    assert [i for i in net.leaders() if i != 1] == [2]
    assert net.cores[2].term == term + 1
    assert net.cores[3].leader_id == 2


def test_fast_leader_loss_candidate_yields_only_to_a_more_up_to_date_log() -> None:
    net = Net(3)
    leader = net.elect(1)
    leader.propose(b"only node 3 gets this")
    net.deliver(drop=cut(1, 2))
    for node_id in (2, 3):
        net.cores[node_id].report_peer_lost(1, net.now)
    net.now += net.cores[2].cfg.leader_loss_quiet_seconds + 1.0
    for node_id in (2, 3):
        net.cores[node_id].tick(net.now)
        net.collect(node_id)
    net.deliver(drop=_dead(1))
    assert [i for i in net.leaders() if i != 1] == [3], "node 2 lacks an entry: it cannot win"


@pytest.mark.parametrize("restarted", [2, 3])
def test_fast_leader_loss_candidate_in_its_boot_window_answers_fellow_fast_candidates(
    restarted: int,
) -> None:
    # One survivor restarted not long ago (in its first election timeout it ignores
    # candidates while it knows no leader), heard from leader 1, lost it and campaigns first;
    # its request does not reach the other survivor, which campaigns in turn. The restarted
    # one must answer that pre-vote and, having stepped back for a lower id, the vote too: it
    # checked the quiet period itself when it campaigned and heard from no leader since.
    net = Net(3)
    net.elect(1)
    net.tick_all(2)
    other = 5 - restarted
    net.cores[restarted]._ticks_since_boot = 0  # as if it had just restarted
    for node_id in (2, 3):
        net.cores[node_id].report_peer_lost(1, net.now)
    net.now += net.cores[2].cfg.leader_loss_quiet_seconds + 1.0
    net.cores[restarted].tick(net.now)
    assert net.cores[restarted].role is Role.PRE_CANDIDATE
    net.deliver(drop=lambda m: m.to == 1 or m.frm == 1 or m.to == other)  # request lost
    net.cores[other].tick(net.now)
    assert net.cores[other].role is Role.PRE_CANDIDATE
    net.deliver(drop=_dead(1))
    assert [i for i in net.leaders() if i != 1] == [other]
