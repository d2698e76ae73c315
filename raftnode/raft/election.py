"""Elections: PreVote, votes, CheckQuorum leases and fast leader-loss detection."""

from __future__ import annotations

from raftnode.raft.core_state import MT, CoreState
from raftnode.raft.quorum import VoteResult, vote_result
from raftnode.raft.status import Role
from raftnode.raft.types import (
    NO_NODE,
    Message,
)


class Election(CoreState):
    """Becoming a (pre-)candidate, counting votes, granting them, and when to campaign.
    A part of ``RaftCore``."""

    def _become_pre_candidate(self) -> None:
        # Unlike a real candidate, a pre-candidate keeps its term and vote.
        self._fail_pending_reads("leader_changed")
        self.role = Role.PRE_CANDIDATE
        self._votes = {}
        self.leader_id = NO_NODE
        self._reset_randomized_timeout()

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def _campaign(self, pre_vote: bool, force: bool = False, leader_lost: bool = False) -> None:
        self._campaign_leader_lost = leader_lost
        self._campaign_transfer = force
        if pre_vote:
            self._become_pre_candidate()
            term = self.term + 1
            msg_type = MT.PRE_VOTE
        else:
            self._become_candidate()
            term = self.term
            msg_type = MT.VOTE
        self._votes[self.id] = True
        if self._tally() is VoteResult.WON:
            self._won_election(pre_vote)
            return
        for voter in sorted(self.conf.voters):
            if voter == self.id:
                continue
            self._send(
                Message(
                    msg_type,
                    to=voter,
                    frm=self.id,
                    term=term,
                    index=self.log.last_index(),
                    log_term=self.log.last_term(),
                    force=force,
                    leader_lost=leader_lost,
                )
            )

    def _won_election(self, pre_vote: bool) -> None:
        if pre_vote:
            self._campaign(pre_vote=False, leader_lost=self._campaign_leader_lost)
        else:
            self._become_leader()

    def _tally(self) -> VoteResult:
        return vote_result(self.conf.voters, self._votes)

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self._maybe_campaign_for_lost_leader():
            return
        if self.election_elapsed >= self._randomized_timeout and self._promotable():
            self.election_elapsed = 0
            self._campaign(pre_vote=self.cfg.pre_vote)

    def _promotable(self) -> bool:
        return self.id in self.conf.voters and self._incoming is None and not self.removed

    def _in_leader_lease(self) -> bool:
        """Whether this node heard from a leader less than an election timeout ago (or booted
        less than an election timeout ago, when it cannot know)."""
        if not self.cfg.check_quorum:
            return False
        recent = self.leader_id != NO_NODE or self._ticks_since_boot < self.cfg.election_ticks
        return recent and self.election_elapsed < self.cfg.election_ticks

    def _leader_lost_and_quiet(self, margin: float = 0.0) -> bool:
        """The fast-path precondition on this node: a follower whose link to its leader was
        reported lost, and which has not heard from that leader for the quiet period
        (plus ``margin`` seconds)."""
        return (
            self.cfg.fast_leader_loss
            and self.role is Role.FOLLOWER
            and self.leader_id != NO_NODE
            and self.leader_id in self._lost_peers
            and self._now - self._leader_heard_at >= self.cfg.leader_loss_quiet_seconds + margin
        )

    def _maybe_campaign_for_lost_leader(self) -> bool:
        """Start a pre-vote marked ``leader_lost`` if the fast-path precondition holds.

        The campaign waits a quarter tick beyond the quiet period the voters check, so that a
        voter that heard the leader's last heartbeat a little later than we did (delivery
        jitter) has passed its own quiet period by the time our request arrives.
        """
        if not self._promotable() or not self._leader_lost_and_quiet(self.cfg.tick_seconds / 4):
            return False
        self.election_elapsed = 0
        self._quiet_proven = True
        self._campaign(pre_vote=self.cfg.pre_vote, leader_lost=True)
        return True

    def _grants_despite_leader(self, m: Message) -> bool:
        """Whether the fast leader-loss rule lets us answer vote request ``m`` although we are
        within our leader's stickiness window (``_in_leader_lease``): the candidate lost its
        link to its leader, ours to our leader is lost too, and we have not heard from our
        leader for ``leader_loss_quiet_seconds``; or we campaigned on this path ourselves and
        heard from no leader since (the same held when we started; this matters in the first
        election timeout after a boot, where a node that knows no leader ignores everybody,
        also after stepping back for a fellow candidate). Log up-to-dateness is checked as
        always.

        Why lease reads stay linearizable. The leader serves a lease read at time t when a
        majority acknowledged a heartbeat round it sent at T > t - lease_seconds. Each voter in
        that majority received the round at or after T, and from then on votes for nobody else
        until it has not heard from the leader for ``leader_loss_quiet_seconds`` (this path) or
        an election timeout (stickiness), by its own clock. ``lease_seconds`` is the shorter of
        the two times (1 - lease_drift), so while the lease holds, no voter of that majority
        can have voted for another candidate; any other leader needs a majority, which shares a
        voter with it, so no other leader can exist yet and the read sees every committed
        write. This does not rely on the transport's loss reports being right: a live leader
        whose links are wrongly reported lost (a flapping link, a firewall answering with
        resets) only costs an election, never a stale read. What it does rely on is what the
        lease already relied on: clock rates differ by less than ``lease_drift``. The quiet
        period also bounds how much faster this path can be: writes resume about
        ``leader_loss_quiet_ticks`` plus an election round trip after the leader's last
        heartbeat, instead of an election timeout or more. (A node that booted recently
        acknowledged nothing of its previous life since: it heard from its leader after
        booting and then waited the quiet period, so its boot is older than that.)
        """
        if not (self.cfg.fast_leader_loss and m.leader_lost):
            return False
        if self._quiet_proven and self.leader_id == NO_NODE:
            return True
        return self._leader_lost_and_quiet()

    def _handle_vote_request(self, m: Message) -> None:
        resp_type = MT.VOTE_RESP if m.type is MT.VOTE else MT.PRE_VOTE_RESP
        can_vote = (
            self.vote == m.frm
            or (self.vote == NO_NODE and self.leader_id == NO_NODE)
            or (m.type is MT.PRE_VOTE and m.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            self._send(Message(resp_type, to=m.frm, frm=self.id, term=m.term))
            if m.type is MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.frm
            elif self._yields_to(m):
                # Both of us noticed the leader's loss at about the same time. If both went on
                # to the real vote, each would have voted for itself and nobody would win until
                # an election timeout later: the less up-to-date (or, equal, higher-id) one
                # steps back and lets the other win.
                self._become_follower(self.term, NO_NODE)
        else:
            self._send(Message(resp_type, to=m.frm, frm=self.id, term=self.term, reject=True))

    def _yields_to(self, m: Message) -> bool:
        """Whether we, on a fast leader-loss pre-vote, step back for the (pre-vote) candidate
        of ``m``, also on one, whose log is at least as up to date as ours (granted already)."""
        if not (
            m.type is MT.PRE_VOTE
            and m.leader_lost
            and self.role is Role.PRE_CANDIDATE
            and self._campaign_leader_lost
            and m.term == self.term + 1
        ):
            return False
        ours = (self.log.last_term(), self.log.last_index())
        return (m.log_term, m.index) > ours or m.frm < self.id

    def _step_candidate(self, m: Message) -> None:
        expected = MT.PRE_VOTE_RESP if self.role is Role.PRE_CANDIDATE else MT.VOTE_RESP
        if m.type in (MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT):
            self._become_follower(m.term, m.frm)
            self._step_follower(m)
        elif m.type is expected:
            self._votes.setdefault(m.frm, not m.reject)
            result = self._tally()
            if result is VoteResult.WON:
                self._won_election(self.role is Role.PRE_CANDIDATE)
            elif result is VoteResult.LOST:
                self._become_follower(self.term, NO_NODE)
        elif m.type is MT.TIMEOUT_NOW:
            pass  # already campaigning
        elif m.type is MT.READ_INDEX:
            self._answer_read(m.frm, m.context, 0, "not_leader")
