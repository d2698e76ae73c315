"""The leader's half of leases: when each lease expires (etcd's lessor is the model).

The lease table (``raftnode.kv.leases``) is replicated state; expiry is not. Only the leader
keeps a deadline per lease, in monotonic time (the event loop's clock), and when one passes it
proposes ``LeaseRevoke`` through the log, which deletes the lease's keys at one revision on
every node. Keep-alives are answered by the leader alone (a follower's request is forwarded,
like a write), on its leader lease rather than a quorum round per batch (``Lessor.keep_alive``
says why that is safe), and never touch the log.

A node that becomes leader (any new term) forgets every deadline and gives every lease its
full TTL again from the moment it notices it (etcd's ``Promote``): a failover never expires a
live lease early, at the price of a late expiry of one TTL plus the election. A lease granted
while this node leads counts from when its grant applied here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from raftnode.consistency import Consistency
from raftnode.kv.commands import CommandResult, LeaseGrant, LeaseRevoke, Outcome
from raftnode.kv.service import KeyValueService
from raftnode.node import NotLeader, Unavailable
from raftnode.raft.types import NO_NODE

log = logging.getLogger(__name__)

MIN_TTL_SECONDS = 1
MAX_TTL_SECONDS = 365 * 24 * 3600
"""The TTLs a grant accepts (whole seconds, as in etcd)."""
CHECK_SECONDS = 0.1
"""How often the leader looks for expired leases (expiry is late by at most this much)."""
REVOKE_TIMEOUT_SECONDS = 5.0


class LeaseNotFound(Exception):
    """No such lease: never granted, revoked, or expired."""

    def __init__(self, lease: int) -> None:
        super().__init__(f"lease {lease} does not exist (never granted, revoked or expired)")
        self.lease = lease


class LeaseRefused(Exception):
    """A grant that applied as a refusal (``outcome``: the id is taken, or too many leases)."""

    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass(frozen=True, slots=True)
class LeaseStatus:
    """What the leader tells about a lease: the TTL left and the TTL granted (seconds)."""

    lease: int
    remaining: float
    granted: int


class Lessor:
    """Lease expiry and keep-alives on one node; acts only while that node leads."""

    def __init__(
        self,
        service: KeyValueService,
        *,
        check_seconds: float = CHECK_SECONDS,
        on_expired: Callable[[], None] | None = None,
    ) -> None:
        self.service = service
        self.node = service.node
        self.check_seconds = check_seconds
        self._on_expired = on_expired
        self._deadlines: dict[int, float] = {}
        self._term = 0
        """The term whose leader set ``_deadlines`` (a new term starts them afresh)."""
        self._revoking: set[int] = set()
        self._tasks: set[asyncio.Future[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.ensure_future(self._sweep_forever())

    def close(self) -> list[asyncio.Future[None]]:
        """Stop sweeping and cancel the revokes in flight; the tasks cancelled."""
        tasks = [t for t in (self._sweeper, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        self._sweeper = None
        self._deadlines.clear()
        return tasks

    async def stop(self) -> None:
        for task in self.close():
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.check_seconds)
            try:
                self.sweep()
            except Exception:
                log.exception("lease sweep failed")

    # -- expiry ------------------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _leading_deadlines(self) -> dict[int, float] | None:
        """This leader's deadlines (reset when the term changed); None when not leading."""
        if not self.node.is_leader:
            self._deadlines.clear()
            return None
        if self.node.term != self._term:
            self._term = self.node.term
            self._deadlines.clear()  # a new leader: every lease gets its full TTL from now
        return self._deadlines

    def sweep(self) -> list[int]:
        """Track every lease the store holds; propose a revoke for each one past its deadline
        (once at a time). Returns the leases found expired."""
        deadlines = self._leading_deadlines()
        leases = self.service.store.leases
        if deadlines is None or leases is None:
            return []
        granted = leases.granted()
        for gone in deadlines.keys() - granted.keys():
            del deadlines[gone]
        now = self._now()
        expired = []
        for lease, ttl in granted.items():
            if deadlines.setdefault(lease, now + ttl) <= now and lease not in self._revoking:
                expired.append(lease)
                self._revoking.add(lease)
                task = asyncio.ensure_future(self._revoke_expired(lease))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return expired

    async def _revoke_expired(self, lease: int) -> None:
        try:
            result = await self.service.write(
                LeaseRevoke(lease, expired=True), self.service.clock() + REVOKE_TIMEOUT_SECONDS
            )
            if result.ok:
                log.info("lease expired", extra={"fields": {"lease": lease}})
                if self._on_expired is not None:
                    self._on_expired()
        except Exception as e:  # the next sweep tries again while this node leads
            log.warning("lease revoke failed", extra={"fields": {"lease": lease, "error": str(e)}})
        finally:
            self._revoking.discard(lease)

    # -- requests (answered by the leader) ---------------------------------------------------

    async def _confirmed_leader(self, deadline: float) -> dict[int, float]:
        """This node's deadlines once it is confirmed to lead (its leader lease, or a quorum
        round when the lease has lapsed) and it applied everything committed before;
        ``NotLeader`` (forward the request) otherwise.

        The leader lease is enough here (see ``keep_alive`` for why), and it saves a heartbeat
        round to every follower per batch of lease requests: under load that round, not the
        lease table, was most of a keep-alive's cost."""
        node = self.node
        if not node.is_leader and node.leader_id == NO_NODE:
            wait = min(deadline - self.service.clock(), self.service.leader_wait)
            await node.wait_for_leader(max(0.0, wait))
            if not node.is_leader and node.leader_id == NO_NODE:
                raise Unavailable("no leader is known (election in progress or no quorum)")
        if not node.is_leader:
            raise NotLeader(node.leader_id)
        await self.service.read_barrier(Consistency.LEASE, deadline)
        deadlines = self._leading_deadlines()
        if deadlines is None:
            raise NotLeader(self.node.leader_id)
        return deadlines

    def _status(self, deadlines: dict[int, float], lease: int) -> LeaseStatus:
        leases = self.service.store.leases
        ttl = leases.ttl(lease) if leases is not None else None
        now = self._now()
        if ttl is None or deadlines.setdefault(lease, now + ttl) <= now:
            raise LeaseNotFound(lease)  # an expired lease is as good as revoked
        return LeaseStatus(lease, deadlines[lease] - now, ttl)

    async def grant(self, ttl: int, lease: int | None, deadline: float) -> LeaseStatus:
        """Grant a lease of ``ttl`` seconds (id ``lease``, or one this leader picks); on a
        follower, ``NotLeader`` (forward the request) before anything is proposed."""
        chosen = lease
        for _ in range(3):  # a picked id that collides is picked again
            chosen = lease if lease is not None else _pick_id(self.service)
            result = await self.service.write(LeaseGrant(chosen, ttl), deadline)
            assert isinstance(result, CommandResult)
            if result.ok:
                deadlines = self._leading_deadlines()
                if deadlines is not None:
                    deadlines[chosen] = self._now() + ttl
                return LeaseStatus(chosen, float(ttl), ttl)
            if result.error != Outcome.LEASE_EXISTS or lease is not None:
                break
        assert result.error is not None and chosen is not None
        raise LeaseRefused(result.error, _refusal_message(result.error, chosen))

    async def keep_alive(self, lease: int, deadline: float) -> LeaseStatus:
        """Renew ``lease`` to its full TTL from when the request arrived; ``LeaseNotFound``
        when it is gone.

        Why a keep-alive answered on the leader lease cannot be broken by a new leader. The
        renewal counts from ``asked``, read before the leadership check. That check passes
        only if a majority acknowledged a heartbeat round this node sent at some T with
        ``asked <= t_check < T + lease_seconds`` (the lease; ``raftnode.raft.election``
        ``_grants_despite_leader`` has the argument), or, when the lease lapsed, a round sent
        at T >= ``asked`` (a ReadIndex round starts after the read was queued). Either way a
        voter of that majority votes for nobody else before T + ``lease_seconds`` (by any
        clock within ``lease_drift``), so any later leader is elected at t0 > ``asked`` and,
        forgetting every deadline, gives each lease its full TTL from t0 or later: it expires
        this lease no earlier than t0 + TTL > ``asked`` + TTL, which is what this answer
        promised. A client counts from when it sent the request, which is before ``asked``,
        so its own view is on the safe side too. A deposed leader that has not noticed yet
        fails the check (its lease lapsed, its round is not acknowledged) and forwards or
        answers 503; its local deadlines never matter, since it cannot commit a revoke.

        Concurrent keep-alives of one lease keep the later deadline (one answered out of order
        never shortens the promise of the other)."""
        asked = self._now()
        deadlines = await self._confirmed_leader(deadline)
        status = self._status(deadlines, lease)
        deadlines[lease] = max(deadlines[lease], asked + status.granted)
        return LeaseStatus(lease, float(status.granted), status.granted)

    async def time_to_live(self, lease: int, deadline: float) -> LeaseStatus:
        return self._status(await self._confirmed_leader(deadline), lease)

    async def all(self, deadline: float) -> list[LeaseStatus]:
        """Every live lease, by id."""
        deadlines = await self._confirmed_leader(deadline)
        leases = self.service.store.leases
        out = []
        for lease in sorted(leases.granted() if leases is not None else {}):
            with contextlib.suppress(LeaseNotFound):
                out.append(self._status(deadlines, lease))
        return out

    async def revoke(self, lease: int, deadline: float) -> int:
        """Revoke ``lease`` now (its keys are deleted); the revision after it."""
        result = await self.service.write(LeaseRevoke(lease), deadline)
        if result.error == Outcome.LEASE_NOT_FOUND:
            raise LeaseNotFound(lease)
        if not result.ok:
            raise Unavailable(f"the revoke failed to apply ({result.error})")
        return result.revision


PICKED_ID_LIMIT = 1 << 53
"""Ids the leader picks stay below 2^53, exact in every JSON parser (JavaScript's numbers)."""


def _pick_id(service: KeyValueService) -> int:
    leases = service.store.leases
    while True:
        lease = secrets.randbelow(PICKED_ID_LIMIT - 1) + 1
        if leases is None or lease not in leases:
            return lease


def _refusal_message(outcome: str, lease: int) -> str:
    if outcome == Outcome.LEASE_EXISTS:
        return f"lease {lease} exists already; choose another id or omit it"
    if outcome == Outcome.TOO_MANY_LEASES:
        return "the cluster holds its maximum number of leases; revoke some first"
    return f"the grant failed to apply ({outcome})"
