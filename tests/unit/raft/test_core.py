"""Scenario tests of the consensus core, named after what the Raft paper (and thesis) require."""

from __future__ import annotations

import dataclasses
import random

import pytest

from raftnode.raft import (
    NO_NODE,
    ConfChangeError,
    ConfChangeOp,
    Entry,
    HardState,
    Message,
    MessageType,
    NotLeaderError,
    RaftConfig,
    RaftCore,
    Role,
    Snapshot,
    SoftState,
)
from tests.unit.raft.harness import Net, cut, isolate

MT = MessageType


# --- 5.2 Leader election -----------------------------------------------------------------
def test_5_2_one_node_wins_and_others_follow() -> None:
    net = Net(3)
    leader = net.elect(1)
    assert net.leaders() == [1]
    assert all(c.leader_id == 1 and c.term == leader.term for c in net.cores.values())


def test_5_2_election_needs_a_majority() -> None:
    net = Net(3)
    drop_all = isolate(1)
    for _ in range(50):
        net.tick(1, drop=drop_all)
    assert net.cores[1].role is not Role.LEADER


def test_single_node_cluster_elects_itself_and_commits() -> None:
    net = Net(1)
    leader = net.elect(1)
    index = leader.propose(b"x")
    net.deliver()
    assert leader.commit_index == index
    assert net.applied[1][-1] == b"x"


# --- PreVote and CheckQuorum ---------------------------------------------------------------
def test_prevote_rejoining_node_does_not_disrupt_the_leader() -> None:
    net = Net(3)
    leader = net.elect(1)
    term = leader.term
    for _ in range(60):  # node 3 is partitioned and keeps timing out
        net.tick_all(drop=isolate(3))
    assert net.cores[3].term == term, "PreVote must keep a partitioned node's term"
    net.tick_all(3)  # heal
    assert leader.role is Role.LEADER and leader.term == term
    assert net.cores[3].leader_id == 1


def test_check_quorum_minority_leader_steps_down() -> None:
    net = Net(3)
    leader = net.elect(1)
    net.tick_all(2 * leader.cfg.election_ticks + 1, drop=isolate(1))
    assert leader.role is Role.FOLLOWER
    assert not leader.has_quorum_contact()
    with pytest.raises(NotLeaderError):
        leader.propose(b"x")


def test_follower_ignores_vote_requests_while_it_hears_from_a_leader() -> None:
    net = Net(3)
    net.elect(1)
    # Node 2 cannot hear node 1 and campaigns; node 3 still hears node 1 and must refuse, so
    # a lease held by node 1 (acknowledged by node 3) stays valid.
    for _ in range(40):
        net.tick_all(drop=cut(1, 2))
        assert net.leaders() == [1]


def test_node_refuses_votes_in_its_first_election_timeout_after_boot() -> None:
    core = RaftCore(
        RaftConfig(node_id=2, tick_seconds=1.0),
        rng=random.Random(1),
        hard_state=HardState(term=5, commit=1),
        entries=RaftCore.bootstrap_entries([1, 2, 3]),
    )
    vote = _vote_request(to=2, frm=3, term=6, index=1, log_term=1)
    core.step(vote, 0.0)
    assert core.term == 5 and not core.ready().messages
    for _ in range(core.cfg.election_ticks):
        core.tick(0.0)
    core.ready()
    core.step(vote, 0.0)
    msgs = core.ready().messages
    assert any(m.type is MT.VOTE_RESP and not m.reject for m in msgs)


def _vote_request(to: int, frm: int, term: int, index: int, log_term: int):
    from raftnode.raft import Message

    return Message(MT.VOTE, to=to, frm=frm, term=term, index=index, log_term=log_term)


# --- 5.3 Log replication -------------------------------------------------------------------
def test_5_3_leader_replicates_and_commits_on_majority() -> None:
    net = Net(3)
    leader = net.elect(1)
    index = leader.propose(b"a")
    net.deliver(drop=isolate(3))
    assert leader.commit_index == index
    assert net.applied[2][-1] == b"a"
    assert b"a" not in net.applied[3]


def test_a_heartbeat_tells_a_lagging_follower_the_leaders_own_commit_index() -> None:
    """The heartbeat's commit is capped at what the leader knows the follower holds (it cannot
    commit further); its index carries the leader's commit, from which the follower counts its
    lag (a restarted follower otherwise thinks itself caught up: tests/integration)."""
    net = Net(3)
    leader = net.elect(1)
    for i in range(20):
        leader.propose(b"w%d" % i)
    net.deliver(drop=isolate(3))
    net.sent.clear()
    net.tick_all(leader.cfg.heartbeat_ticks, drop=isolate(3))
    to_3 = [m for m in net.sent if m.type is MT.HEARTBEAT and m.to == 3]
    assert to_3, "no heartbeat to node 3"
    assert to_3[-1].commit < leader.commit_index
    assert to_3[-1].index == leader.commit_index


def test_5_3_fast_backtracking_skips_a_whole_divergent_term() -> None:
    net = Net(3)
    leader = net.elect(1)
    net.tick_all(2)
    # Node 1 appends 300 entries no one else gets, then loses leadership.
    for i in range(300):
        leader.propose(b"lost-%d" % i)
    net.collect(1)
    net.pending.clear()
    net.cores[2]._ticks_since_boot = 0
    for _ in range(100):
        net.tick_all(drop=isolate(1))
        if net.leaders() and net.leaders() != [1]:
            break
    new_leader = net.cores[net.leaders()[-1]]
    new_leader.propose(b"kept")
    net.deliver(drop=isolate(1))
    net.sent.clear()
    net.tick_all(3)
    rejections = [m for m in net.sent if m.type is MT.APPEND_RESP and m.reject and m.frm == 1]
    assert len(rejections) <= 3, f"{len(rejections)} rejections: backtracking is one by one"
    assert net.cores[1].log.term(net.cores[1].last_index) == new_leader.term


def test_pipelining_is_bounded_by_the_inflight_window() -> None:
    net = Net(3, max_inflight=2, max_batch_entries=1)
    leader = net.elect(1)
    net.tick_all(2)
    net.sent.clear()
    for i in range(10):
        leader.propose(b"%d" % i)
    net.collect(1)
    appends_to_2 = [m for m in net.pending if m.type is MT.APPEND and m.to == 2 and m.entries]
    assert len(appends_to_2) == 2
    net.deliver()
    assert net.cores[2].commit_index == leader.last_index


def test_5_4_2_leader_commits_only_entries_of_its_own_term_by_counting() -> None:
    # Raft paper figure 8: an entry of an older term stored on a majority is not committed
    # until an entry of the current term is.
    entries = [*RaftCore.bootstrap_entries([1, 2, 3]), Entry(term=2, index=2, data=b"old")]
    cfg = RaftConfig(node_id=1, tick_seconds=1.0)
    core = RaftCore(
        cfg, rng=random.Random(1), hard_state=HardState(term=3, vote=1, commit=1), entries=entries
    )
    core._become_candidate()
    core._become_leader()  # term 4; appends a no-op at index 3
    core.advance(core.ready())
    from raftnode.raft import Message

    core.step(Message(MT.APPEND_RESP, to=1, frm=2, term=core.term, index=2), 0.0)
    assert core.commit_index == 1, "an old-term entry must not be committed by counting replicas"
    core.step(Message(MT.APPEND_RESP, to=1, frm=2, term=core.term, index=3), 0.0)
    assert core.commit_index == 3


def test_10_2_1_leader_sends_before_its_fsync_but_counts_itself_only_once_durable() -> None:
    from raftnode.raft import Message

    net = Net(3)
    leader = net.elect(1)
    net.tick_all(2)
    index = leader.propose(b"x")
    rd = leader.ready()
    assert [m.to for m in rd.early_messages if m.type is MT.APPEND] == [2, 3]
    # Node 2 acknowledges while the leader's own fsync is still running: 1 of 3 is not a majority.
    leader.step(Message(MT.APPEND_RESP, to=1, frm=2, term=leader.term, index=index), net.now)
    assert leader.commit_index < index
    leader.advance(rd)  # now the leader's copy is durable too
    assert leader.commit_index == index


@pytest.mark.parametrize("size", [1, 3])
def test_propose_matches_propose_many_entry_for_entry(size: int) -> None:
    """``propose`` (one normal entry, every write's path) leaves the same log, commit index
    and messages as the general path, in a cluster of one (where its own durability alone
    commits) and of three."""
    nets = [Net(size), Net(size)]
    leaders = [net.elect(1) for net in nets]
    for net in nets:
        net.tick_all(2)
    for step in range(3):
        datas = [f"w{step}-{i}".encode() for i in range(4)]
        firsts = [leaders[0].propose(datas[0]), leaders[1].propose_many(datas[:1])]
        for data in datas[1:]:
            leaders[0].propose(data)
        leaders[1].propose_many(datas[1:])
        assert firsts[0] == firsts[1]
        readies = [leader.ready() for leader in leaders]
        assert readies[0].entries == readies[1].entries
        assert readies[0].early_messages == readies[1].early_messages
        assert readies[0].messages == readies[1].messages
        for net, leader, rd in zip(nets, leaders, readies, strict=True):
            leader.advance(rd)
            net.pending.extend(rd.early_messages + rd.messages)
        assert leaders[0].commit_index == leaders[1].commit_index
        for net in nets:
            net.deliver()
        assert leaders[0].commit_index == leaders[1].commit_index == leaders[0].log.last_index()


def test_entries_committed_and_durable_may_be_applied_before_the_next_batchs_fsync() -> None:
    from raftnode.raft import Message

    net = Net(3)
    leader = net.elect(1)
    net.tick_all(2)
    first = leader.propose(b"x")
    leader.advance(leader.ready())  # x is durable on the leader
    leader.step(Message(MT.APPEND_RESP, to=1, frm=2, term=leader.term, index=first), net.now)
    second = leader.propose(b"y")  # the next batch, not yet persisted
    rd = leader.ready()
    assert [e.index for e in rd.entries] == [second]
    assert [e.index for e in rd.committed_entries] == [first]
    assert rd.durable_committed == 1


def test_committed_entries_that_this_ready_persists_are_not_durable_yet() -> None:
    net = Net(3)
    leader = net.elect(1)
    net.tick_all(2)
    net.sent.clear()
    leader.propose(b"x")
    net.collect(1)
    append = next(m for m in net.pending if m.type is MT.APPEND and m.to == 2 and m.entries)
    net.pending.clear()
    # The follower learns the entry and that it is committed in one message: it must persist
    # the entry before applying it.
    follower = net.cores[2]
    follower.advance(follower.ready())
    commit = append.entries[-1].index
    follower.step(dataclasses.replace(append, commit=commit), net.now)
    rd = follower.ready()
    assert [e.index for e in rd.entries] == [commit]
    assert rd.committed_entries[-1].index == commit
    assert rd.durable_committed == len(rd.committed_entries) - 1


# --- Reads -----------------------------------------------------------------------------------
def test_read_index_waits_for_a_quorum_round() -> None:
    net = Net(3)
    leader = net.elect(1)
    net.tick_all(2)
    leader.read_index(7, net.now)
    net.collect(1)
    assert not net.read_states[1], "answered before a majority confirmed leadership"
    net.deliver()
    assert [(r.request_id, r.index, r.error) for r in net.read_states[1]] == [
        (7, leader.commit_index, None)
    ]


def test_read_index_on_isolated_leader_never_succeeds() -> None:
    net = Net(3)
    leader = net.elect(1)
    net.tick_all(2)
    leader.read_index(9, net.now)
    net.tick_all(3 * leader.cfg.election_ticks, drop=isolate(1))
    assert [r.error is not None for r in net.read_states[1]] == [True]


def test_follower_read_index_comes_from_the_leader() -> None:
    net = Net(3)
    leader = net.elect(1)
    leader.propose(b"v")
    net.tick_all(2)
    net.cores[2].read_index(11, net.now)
    net.deliver()
    (state,) = net.read_states[2]
    assert state.request_id == 11 and state.error is None and state.index == leader.commit_index


def test_read_index_without_leader_fails_fast() -> None:
    net = Net(3)
    net.cores[2].read_index(5, 0.0)
    net.collect(2)
    assert net.read_states[2][0].error == "no_leader"


def test_lease_read_is_immediate_while_the_lease_holds_and_expires_after() -> None:
    net = Net(3)
    leader = net.elect(1)
    net.tick_all(2)
    assert leader.lease_valid(net.now)
    leader.read_index(1, net.now, lease=True)
    net.collect(1)
    assert net.read_states[1] and net.read_states[1][0].error is None
    net.tick_all(leader.cfg.election_ticks - 1, drop=isolate(1))
    assert not leader.lease_valid(net.now), "lease must end before followers may elect another"


# --- Snapshots ---------------------------------------------------------------------------------
def test_lagging_follower_gets_a_chunked_snapshot() -> None:
    net = Net(3, snapshot_chunk_bytes=10, compaction_retain=0)
    leader = net.elect(1)
    for i in range(20):
        leader.propose(b"e%d" % i)
        net.deliver(drop=isolate(3))
    data = b"state-machine-image-" * 5
    snap = Snapshot(leader.snapshot_meta(leader.applied_index), data)
    leader.compact(snap)
    assert leader.log.first_index() > 2
    net.sent.clear()
    net.tick_all(4)
    chunks = [m for m in net.sent if m.type is MT.SNAPSHOT and m.to == 3]
    assert len(chunks) >= len(data) // 10
    assert net.snapshots[3].data == data
    assert net.cores[3].commit_index == leader.commit_index


# --- Leadership transfer ------------------------------------------------------------------------
def test_transfer_leadership_without_waiting_for_an_election_timeout() -> None:
    net = Net(3)
    leader = net.elect(1)
    leader.propose(b"x")
    net.tick_all(2)
    term = leader.term
    target = leader.transfer_leadership()
    net.deliver()
    assert target in (2, 3)
    assert net.leaders() == [target]
    assert net.cores[target].term == term + 1


def test_proposals_are_refused_during_a_transfer() -> None:
    net = Net(3)
    leader = net.elect(1)
    net.tick_all(2)
    leader.transfer_leadership(2)
    with pytest.raises(NotLeaderError):
        leader.propose(b"x")


# --- Membership -----------------------------------------------------------------------------------
def test_learner_catches_up_then_is_promoted_and_votes() -> None:
    net = Net(3, learner_catchup_entries=5)
    leader = net.elect(1)
    for i in range(20):
        leader.propose(b"%d" % i)
    net.tick_all(2)
    net.add(4)
    leader.propose_conf_change(ConfChangeOp.ADD_LEARNER, 4, {"peer": "x:1"})
    assert leader.conf.learners == {4}
    net.tick_all(4)
    assert net.cores[4].commit_index == leader.commit_index
    assert net.cores[4].role is Role.FOLLOWER and not net.cores[4].is_voter()
    leader.propose_conf_change(ConfChangeOp.ADD_VOTER, 4)
    net.tick_all(3)
    assert net.cores[4].conf.voters == {1, 2, 3, 4}
    # With 4 voters, a commit needs 3: nodes 1 and 4 alone cannot commit.
    leader.propose(b"needs-three")
    net.deliver(drop=lambda m: m.to in (2, 3) or m.frm in (2, 3))
    assert leader.commit_index < leader.last_index


def test_promotion_refused_until_the_learner_caught_up() -> None:
    net = Net(3, learner_catchup_entries=5)
    leader = net.elect(1)
    net.tick_all(2)
    leader.propose_conf_change(ConfChangeOp.ADD_LEARNER, 4)
    for i in range(20):
        leader.propose(b"%d" % i)
    net.tick_all(2)
    with pytest.raises(ConfChangeError, match="caught up"):
        leader.propose_conf_change(ConfChangeOp.ADD_VOTER, 4)


def test_one_membership_change_at_a_time() -> None:
    net = Net(3)
    leader = net.elect(1)
    net.tick_all(2)
    leader.propose_conf_change(ConfChangeOp.ADD_LEARNER, 4)
    with pytest.raises(ConfChangeError, match="in progress"):
        leader.propose_conf_change(ConfChangeOp.ADD_LEARNER, 5)


def test_removed_leader_steps_down_and_the_rest_elect() -> None:
    net = Net(3)
    leader = net.elect(1)
    net.tick_all(2)
    leader.propose_conf_change(ConfChangeOp.REMOVE, 1)
    net.tick_all(2)
    assert leader.role is Role.FOLLOWER
    assert not leader.is_voter()
    net.tick_all(60)
    assert len([n for n in net.leaders() if n != 1]) == 1


def test_bootstrap_requires_voters() -> None:
    with pytest.raises(ValueError):
        RaftCore.bootstrap_entries([])


def test_ready_reports_soft_state_only_when_role_term_or_leader_changed() -> None:
    """etcd's SoftState: the application learns role and leader from Ready, not by diffing."""
    net = Net(3)
    core = net.cores[2]
    first = core.ready()
    assert first.soft_state == SoftState(Role.FOLLOWER, 1, NO_NODE)
    core.advance(first)
    assert not core.has_ready()
    core.step(Message(MT.HEARTBEAT, to=2, frm=3, term=2), net.now)
    rd = core.ready()
    assert rd.soft_state == SoftState(Role.FOLLOWER, 2, 3)
    core.advance(rd)
    core.step(Message(MT.HEARTBEAT, to=2, frm=3, term=2), net.now)
    while core.has_ready():
        rd = core.ready()
        assert rd.soft_state is None  # same role, term and leader: nothing to report
        core.advance(rd)


def test_a_removed_node_that_missed_its_removal_is_told_and_never_campaigns_again() -> None:
    """The entry removing node 3 never reaches it (it is cut off meanwhile): its campaigns
    reach the leader, which answers REMOVED; after that it stays a quiet follower."""
    net = Net(3)
    leader = net.elect(1)
    net.tick_all(2)
    leader.propose_conf_change(ConfChangeOp.REMOVE, 3)
    net.tick_all(3, drop=lambda m: m.to == 3 or m.frm == 3)
    assert 3 not in leader.conf.members()
    removed = net.cores[3]
    assert not removed.removed and removed.is_voter()  # it does not know yet
    net.tick_all(60)  # it times out, campaigns, and hears back
    assert removed.removed and removed.role is Role.FOLLOWER
    term = removed.term
    net.tick_all(60)
    assert removed.term == term and removed.role is Role.FOLLOWER  # no more elections
    assert net.leaders() == [1]


def test_quorum_contact_does_not_blink_when_check_quorum_clears_its_marks() -> None:
    """/primary asks has_quorum_contact: it must stay true through the CheckQuorum round, when
    the leader clears every follower's recent_active before their next answers arrive."""
    net = Net(3)
    leader = net.elect(1)
    net.tick_all(2)
    for _ in range(3 * leader.cfg.election_ticks):
        net.now += 1.0
        leader.tick(net.now)  # the answers to this tick's heartbeats are not delivered yet
        assert leader.has_quorum_contact()
        net.deliver()
    for _ in range(leader.cfg.election_ticks + 1):  # cut off: contact lapses after a timeout
        net.now += 1.0
        leader.tick(net.now)
        net.deliver(drop=lambda m: True)
    assert not leader.has_quorum_contact()


def test_promoting_a_stranger_is_refused_and_quorum_is_untouched() -> None:
    net = Net(3)
    leader = net.elect(1)
    net.tick_all(2)
    for stranger in (97, 98, 99):
        with pytest.raises(ConfChangeError, match="not a learner"):
            leader.propose_conf_change(ConfChangeOp.ADD_VOTER, stranger)
    assert leader.conf.voters == {1, 2, 3}
    leader.propose(b"still-commits")
    net.tick_all(2)
    assert leader.commit_index == leader.last_index


def test_a_change_decided_on_an_older_configuration_is_refused() -> None:
    net = Net(3)
    leader = net.elect(1)
    net.tick_all(2)
    seen = leader.config_index
    leader.propose_conf_change(ConfChangeOp.ADD_LEARNER, 4, prev_index=seen)
    net.tick_all(2)
    assert leader.config_index > seen
    with pytest.raises(ConfChangeError, match=f"changed since index {seen}"):
        leader.propose_conf_change(ConfChangeOp.REMOVE, 3, prev_index=seen)
    assert leader.conf.voters == {1, 2, 3}
    leader.propose_conf_change(ConfChangeOp.REMOVE, 4, prev_index=leader.config_index)


def test_status_is_a_copy_that_carries_the_catch_up_rule() -> None:
    net = Net(3, learner_catchup_entries=5)
    leader = net.elect(1)
    net.tick_all(2)
    net.add(4)
    leader.propose_conf_change(ConfChangeOp.ADD_LEARNER, 4, {"peer": "x:1"})
    st = leader.status()
    assert st.is_leader and st.conf.learners == {4} and 4 not in st.learners_caught_up
    net.tick_all(4)
    st = leader.status()
    assert st.learners_caught_up == {4}
    assert st.progress[4].match == st.last_index and st.lag_of(4) == 0
    st.progress.clear()  # a copy: the core's own progress is untouched
    assert leader.status().progress[4].match == leader.last_index
    follower = net.cores[2].status()
    assert not follower.is_leader and follower.progress == {} and follower.leader_id == 1
    assert follower.leader_heard_within(3) and not follower.leader_lost()


def test_a_few_missed_heartbeats_are_not_a_verdict_that_the_leader_is_gone() -> None:
    """A follower forwarding a write gives it up (504 when unkeyed) only on Raft's own verdict:
    a leader starved for a few heartbeats still leads and answers; an election timeout of
    silence (or a campaign) is the verdict."""
    net = Net(3)
    net.elect(1)
    net.tick_all(2)
    follower = net.cores[2]
    assert not follower.status().leader_presumed_gone()
    net.tick(2, times=4, drop=lambda m: True)  # the leader's heartbeats are late
    st = follower.status()
    assert not st.leader_heard_within(3) and st.leader_id == 1
    assert not st.leader_presumed_gone()
    net.tick(2, times=follower.cfg.election_ticks - 4, drop=lambda m: True)
    assert follower.status().leader_presumed_gone()
    assert not net.cores[1].status().leader_presumed_gone()  # a leader never presumes so


def test_a_campaign_the_leader_asked_for_is_not_a_verdict_that_it_is_gone() -> None:
    """The leader hands over (e.g. it is being removed, on a write a follower forwarded to it):
    the follower it asks campaigns at once; the leader is alive and will answer, so the
    forwarded write is not given up. A campaign of its own (its timer fired) still is."""
    net = Net(3)
    leader = net.elect(1)
    net.tick_all(2)
    leader.transfer_leadership(2)
    net.deliver(drop=lambda m: m.type in (MT.VOTE, MT.VOTE_RESP))  # TimeoutNow only
    st = net.cores[2].status()
    assert st.role is Role.CANDIDATE and st.campaign_transfer
    assert not st.leader_presumed_gone()
    net.tick(2, times=4 * net.cores[2].cfg.election_ticks, drop=lambda m: True)
    st = net.cores[2].status()
    assert st.role in (Role.PRE_CANDIDATE, Role.CANDIDATE) and not st.campaign_transfer
    assert st.leader_presumed_gone()


def test_a_node_that_won_its_own_campaign_knows_what_it_forwarded_gets_no_answer() -> None:
    """A follower's timer fires and it wins within milliseconds: a forwarded write's watcher may
    never see it campaigning. Leading after its own campaign is the verdict too; leading after
    a transfer the old leader asked for is not (that leader is alive and answers)."""
    net = Net(3)
    net.elect(1)
    net.tick_all(2)
    assert not net.cores[2].status().leads_after_own_campaign()
    for _ in range(4 * net.cores[2].cfg.election_ticks):
        net.tick_all(drop=isolate(1))
        if set(net.leaders()) - {1}:
            break
    (new,) = set(net.leaders()) - {1}
    st = net.cores[new].status()
    assert st.is_leader and st.leads_after_own_campaign()
    assert not st.leader_presumed_gone()  # the follower's verdict; this node leads now

    handed = Net(3)
    leader = handed.elect(1)
    handed.tick_all(2)
    leader.transfer_leadership(2)
    handed.deliver()
    st = handed.cores[2].status()
    assert st.is_leader and not st.leads_after_own_campaign()
