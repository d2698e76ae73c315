"""The key-value service: ``KeyValueStore`` replicated by a ``RaftNode`` (the embedding API).

Writes become ``Command`` (or ``Txn``) entries proposed through the node; reads first pass the
node's read barrier for the requested consistency, then read the local store. When no leader is
known the service waits for one (bounded by ``leader_wait``) before giving up, so a client
request that lands during an election costs latency rather than an error.

Mixed releases: an entry an older member could not apply (``needs_protocol`` above 2) is only
proposed once every member is known to speak its peer protocol version; until then it is
refused with ``UpgradeInProgress`` and nothing is proposed. The first write once they all do is
preceded by the ``FormatUpgrade`` entry, from which every store counts per-key versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from raftnode.consistency import Consistency
from raftnode.kv.commands import (
    HISTORY_FORMAT,
    HISTORY_PROTOCOL_VERSION,
    LEASE_FORMAT,
    LEASE_PROTOCOL_VERSION,
    LEGACY_PROTOCOL_VERSION,
    REVISIONS_FORMAT,
    TXN_PROTOCOL_VERSION,
    ApplyResult,
    Command,
    CommandResult,
    Compact,
    CompactResult,
    FormatUpgrade,
    LeaseGrant,
    LeaseRevoke,
    Outcome,
    Txn,
    TxnResult,
)
from raftnode.kv.store import KeyValueStore
from raftnode.node import NodeError, NotLeader, RaftNode, Unavailable
from raftnode.storage.disk_space import DiskSpaceGuard


class DiskFull(Exception):
    """A write that adds data was refused: the data directory's filesystem is nearly full."""

    def __init__(self, free: int, minimum: int) -> None:
        super().__init__(f"{free} bytes free, {minimum} kept in reserve")
        self.free = free
        self.minimum = minimum


class UpgradeInProgress(Exception):
    """A write of a kind some member's release cannot apply: nothing was proposed."""

    def __init__(self, members: list[int], version: int) -> None:
        named = ", ".join(f"node {m}" for m in members)
        super().__init__(
            f"not every member is known to run a release that applies this request ({named}: "
            f"an older release, or not connected since this node started; peer protocol "
            f"{version} is needed); finish the rolling upgrade or bring the member back, "
            "then retry"
        )
        self.members = members


class KeyValueService:
    def __init__(
        self,
        node: RaftNode,
        store: KeyValueStore,
        *,
        leader_wait: float,
        disk_guard: DiskSpaceGuard | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        """What request deadlines are measured on (the simulation's virtual time there)."""
        self.node = node
        self.store = store
        self.leader_wait = leader_wait
        self.disk_guard = disk_guard
        self._format_upgrade: asyncio.Task[None] | None = None

    async def write(
        self, cmd: Command | Txn | LeaseGrant | LeaseRevoke | Compact, deadline: float
    ) -> ApplyResult:
        """Propose ``cmd`` here (this node leads) and return its result once applied.

        Raises ``NotLeader`` with the leader to forward to; when no leader is known it first
        waits for one (bounded), and raises ``Unavailable`` if none appears. A put while the
        disk is nearly full raises ``DiskFull`` before anything is proposed.
        """
        guard = self.disk_guard
        if _adds_data(cmd) and guard is not None and guard.too_full():
            raise DiskFull(guard.free(), guard.min_free_bytes)
        if cmd.needs_protocol > LEGACY_PROTOCOL_VERSION:
            behind = self.node.members_below_version(cmd.needs_protocol)
            if behind:
                raise UpgradeInProgress(behind, cmd.needs_protocol)
        await self._upgrade_format(deadline)
        new_kind = cmd.needs_protocol > LEGACY_PROTOCOL_VERSION
        needs_format = LEASE_FORMAT if cmd.needs_protocol >= LEASE_PROTOCOL_VERSION else 2
        if new_kind and self.node.is_leader and self.store.format_version < needs_format:
            # A follower forwards (propose says NotLeader); the leader upgrades first.
            raise Unavailable("the store format upgrade has not applied yet")
        if isinstance(cmd, Command) and self.store.would_exceed_quota(cmd):
            # Refused before proposing; applying checks again, the same way on every node.
            return CommandResult(
                ok=False, revision=self.store.revision, error=Outcome.QUOTA_EXCEEDED
            )
        waited = False
        while True:
            remaining = deadline - self.clock()
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
            assert isinstance(result, CommandResult | TxnResult | CompactResult)
            return result

    async def _upgrade_format(self, deadline: float) -> None:
        """Propose ``FormatUpgrade`` (once; concurrent writes share it) when this node leads,
        its store is below the newest format and every member speaks the protocol that applies
        the upgrade (to the newest format they all apply: 4, 3 or 2). Failures leave it to the
        next write."""
        node = self.node
        if self.store.format_version >= LEASE_FORMAT or not node.is_leader:
            return
        target = next(
            (fmt for fmt, protocol in _UPGRADES if not node.members_below_version(protocol)), 0
        )
        if self.store.format_version >= target:
            return
        if self._format_upgrade is None or self._format_upgrade.done():
            self._format_upgrade = asyncio.ensure_future(self._propose_upgrade(target, deadline))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.shield(self._format_upgrade), max(0.0, deadline - self.clock())
            )

    async def _propose_upgrade(self, target: int, deadline: float) -> None:
        with contextlib.suppress(NodeError):
            entry = FormatUpgrade(target).encode()
            await self.node.propose(entry, max(0.0, deadline - self.clock()))

    async def read_barrier(self, consistency: Consistency, deadline: float) -> None:
        """Wait until the local store may answer at ``consistency``; retries across elections."""
        budget_end = min(deadline, self.clock() + self.leader_wait)
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise Unavailable("no leader confirmed the read in time")
            try:
                await self.node.read_barrier(consistency, remaining)
                return
            except Unavailable:
                if self.clock() >= budget_end or self.node.stopping:
                    raise
                await self.node.wait_for_leader(max(0.0, budget_end - self.clock()))
                await self.node.changed(budget_end)


_UPGRADES = (
    (LEASE_FORMAT, LEASE_PROTOCOL_VERSION),
    (HISTORY_FORMAT, HISTORY_PROTOCOL_VERSION),
    (REVISIONS_FORMAT, TXN_PROTOCOL_VERSION),
)
"""Each store format, newest first, and the peer protocol of releases that apply it."""


def _adds_data(cmd: Command | Txn | LeaseGrant | LeaseRevoke | Compact) -> bool:
    if isinstance(cmd, LeaseGrant | LeaseRevoke | Compact):
        return False
    if isinstance(cmd, Txn):
        return any(op.op == "put" for op in (*cmd.success, *cmd.failure))
    return cmd.op == "put"
