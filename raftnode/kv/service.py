"""The key-value service: ``KeyValueStore`` replicated by a ``RaftNode`` (the embedding API).

Writes become ``Command`` entries proposed through the node; reads first pass the node's read
barrier for the requested consistency, then read the local store. When no leader is known the
service waits for one (bounded by ``leader_wait``) before giving up, so a client request that
lands during an election costs latency rather than an error.
"""

from __future__ import annotations

import time

from raftnode.consistency import Consistency
from raftnode.kv.commands import Command, CommandResult, Outcome
from raftnode.kv.store import KeyValueStore
from raftnode.node import NotLeader, RaftNode, Unavailable
from raftnode.storage.disk_space import DiskSpaceGuard


class DiskFull(Exception):
    """A write that adds data was refused: the data directory's filesystem is nearly full."""

    def __init__(self, free: int, minimum: int) -> None:
        super().__init__(f"{free} bytes free, {minimum} kept in reserve")
        self.free = free
        self.minimum = minimum


class KeyValueService:
    def __init__(
        self,
        node: RaftNode,
        store: KeyValueStore,
        *,
        leader_wait: float,
        disk_guard: DiskSpaceGuard | None = None,
    ) -> None:
        self.node = node
        self.store = store
        self.leader_wait = leader_wait
        self.disk_guard = disk_guard

    async def write(self, cmd: Command, deadline: float) -> CommandResult:
        """Propose ``cmd`` here (this node leads) and return its result once applied.

        Raises ``NotLeader`` with the leader to forward to; when no leader is known it first
        waits for one (bounded), and raises ``Unavailable`` if none appears. A put while the
        disk is nearly full raises ``DiskFull`` before anything is proposed.
        """
        guard = self.disk_guard
        if cmd.op == "put" and guard is not None and guard.too_full():
            raise DiskFull(guard.free(), guard.min_free_bytes)
        if self.store.would_exceed_quota(cmd):
            # Refused before proposing; applying checks again, the same way on every node.
            return CommandResult(
                ok=False, revision=self.store.revision, error=Outcome.QUOTA_EXCEEDED
            )
        waited = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unavailable("no leader could take the write in time")
            try:
                result = await self.node.propose(cmd.encode(), remaining)
            except NotLeader as e:
                if e.leader_id or waited:
                    raise
                waited = True
                await self.node.wait_for_leader(min(remaining, self.leader_wait))
                if self.node.leader_id == 0 and not self.node.is_leader:
                    raise Unavailable(
                        "no leader is known (election in progress or no quorum)"
                    ) from e
                continue
            assert isinstance(result, CommandResult)
            return result

    async def read_barrier(self, consistency: Consistency, deadline: float) -> None:
        """Wait until the local store may answer at ``consistency``; retries across elections."""
        budget_end = min(deadline, time.monotonic() + self.leader_wait)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unavailable("no leader confirmed the read in time")
            try:
                await self.node.read_barrier(consistency, remaining)
                return
            except Unavailable:
                if time.monotonic() >= budget_end or self.node.stopping:
                    raise
                await self.node.wait_for_leader(max(0.0, budget_end - time.monotonic()))
                await self.node.changed(budget_end)
