"""Linearizable reads on the leader: ReadIndex rounds and the leader lease.

Every heartbeat broadcast is a numbered round, sent at a known time. Followers echo the round in
their answers. A read that arrives is given the commit index as its read index and waits for a
round sent after it arrived; once a majority has acknowledged such a round the leader knows it was
still the leader then, and the read is safe. The same acknowledgements extend the lease: a
majority acknowledged a round sent at time T, so no other leader can be elected before T plus
the time a voter waits after hearing from its leader before it votes for anybody else (an
election timeout, or the shorter quiet period of fast leader-loss detection), and the lease runs
until T + lease_seconds, which is shorter (``RaftConfig.lease_seconds``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from raftnode.raft.quorum import committed_index


@dataclass(slots=True)
class PendingRead:
    requester: int
    request_id: int
    index: int
    round: int


class ReadTracker:
    __slots__ = ("_acked", "_pending", "_sent_at", "round", "round_wanted")

    def __init__(self) -> None:
        self.round = 0
        self.round_wanted = False
        self._sent_at: dict[int, float] = {}
        self._acked: dict[int, int] = {}
        self._pending: deque[PendingRead] = deque()

    def start_round(self, now: float) -> int:
        self.round += 1
        self._sent_at[self.round] = now
        self.round_wanted = False
        return self.round

    def add(self, requester: int, request_id: int, index: int) -> None:
        """Queue a read; it needs a round that has not been sent yet."""
        self._pending.append(PendingRead(requester, request_id, index, self.round + 1))
        self.round_wanted = True

    def ack(self, peer: int, round_: int) -> None:
        if round_ > self._acked.get(peer, 0):
            self._acked[peer] = round_

    def quorum_round(self, voters: frozenset[int], self_id: int) -> int:
        return committed_index(
            voters, lambda v: self.round if v == self_id else self._acked.get(v, 0)
        )

    def release(self, voters: frozenset[int], self_id: int) -> list[PendingRead]:
        """Reads whose round a majority acknowledged, in arrival order."""
        done_round = self.quorum_round(voters, self_id)
        released: list[PendingRead] = []
        while self._pending and self._pending[0].round <= done_round:
            released.append(self._pending.popleft())
        for old in [r for r in self._sent_at if r < done_round]:
            del self._sent_at[old]
        return released

    def lease_start(self, voters: frozenset[int], self_id: int) -> float | None:
        """Send time of the newest round a majority acknowledged (None when none was)."""
        return self._sent_at.get(self.quorum_round(voters, self_id))

    def has_unacked_round(self, voters: frozenset[int], self_id: int) -> bool:
        return self.quorum_round(voters, self_id) < self.round

    def drain(self) -> list[PendingRead]:
        pending = list(self._pending)
        self._pending.clear()
        return pending
