"""The runtime: one ``RaftCore`` driven with a log store and a message carrier on one event loop.

Inputs reach the core as they happen (a tick every ``tick_seconds``, each peer message, each
proposal or read). One ready loop turns the core's outputs into effects, always in the order
``Ready`` prescribes: send the leader's early appends, persist (one durable batch), send the rest,
apply, then ``advance``. While a persist is in flight the loop keeps stepping messages and ticks,
so heartbeats never wait for the disk, and everything that accumulated meanwhile is persisted by
the next batch (group commit).

The node reaches the outside only through ``LogStore`` (durable state), ``MessageCarrier``
(peers) and a clock; production uses ``DiskLogStore``, ``PeerTransport`` and the monotonic
clock, and the simulation (``tests/sim``) runs this very loop on in-memory stand-ins and a
virtual-time event loop.

Applications reach the node through ``propose`` (resolves with the state machine's result for
that entry), ``change_membership``, ``read_barrier`` (resolves once a read of the local state
machine is as fresh as the requested consistency), leader-change listeners and the read-only
properties. The embedding API (``raftnode.embed``) documents this surface for applications.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import mmap
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from raftnode.config import Address
from raftnode.consistency import Consistency
from raftnode.defaults import Snapshot as SnapshotDefaults
from raftnode.defaults import Timing
from raftnode.metrics import NodeMetrics
from raftnode.raft.confchange import check_addresses_unused
from raftnode.raft.config import RaftConfig
from raftnode.raft.core import RaftCore, Ready, Role, SoftState
from raftnode.raft.errors import ConfChangeError, NotLeaderError
from raftnode.raft.types import (
    NO_NODE,
    ConfChange,
    ConfChangeOp,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
)
from raftnode.state_keeping import (
    DurableKeeper,
    DurableStateMachine,
    RunBlocking,
    SnapshottingKeeper,
    StateKeeper,
    StateMachine,
    executor_runner,
)
from raftnode.storage.cluster_identity import bootstrap_cluster_id
from raftnode.storage.log_store import DiskLogStore, LogStore
from raftnode.transport.auth import NO_CLUSTER
from raftnode.transport.carrier import MessageCarrier
from raftnode.transport.peer import PeerTransport

log = logging.getLogger(__name__)

CONSISTENCY_LEVELS = tuple(Consistency)

REMOVED_PEER_LINGER_SECONDS = 30.0
"""How long a removed member's link stays open, so it can be told it was removed."""

Clock = Callable[[], float]
"""Seconds from a monotonic clock; dates the leader's heartbeat rounds for the lease."""


class NodeError(Exception):
    """Base class of the errors a request can get from the node."""


class NotLeader(NodeError):
    """This node cannot take the write; ``leader_id`` is the leader to ask (0 when unknown)."""

    def __init__(self, leader_id: int) -> None:
        super().__init__(f"not the leader (leader: {leader_id or 'unknown'})")
        self.leader_id = leader_id


class Unavailable(NodeError):
    """No leader, no quorum, or the node is shutting down: nothing was done, retry later."""


class OutcomeUnknown(NodeError):
    """The write was proposed but its fate is not known within the deadline (it may apply)."""


@dataclass(frozen=True, slots=True)
class NodeOptions:
    """How to run one node. ``members`` maps every initial voter (this node too) to its
    peer address; it only matters the first time a data directory is used, and only when
    ``initial_cluster_state`` is ``"new"`` (etcd's meaning): a node started as ``"existing"``
    with an empty data directory never bootstraps; it waits for the leader to contact it."""

    node_id: int
    data_dir: Path
    listen_peer: Address
    members: Mapping[int, Address]
    secret: bytes
    tick_seconds: float = Timing().tick_seconds
    election_ticks: int = Timing().election_ticks
    heartbeat_ticks: int = Timing().heartbeat_ticks
    snapshot_every_entries: int = SnapshotDefaults().every_entries
    initial_cluster_state: Literal["new", "existing"] = "new"
    initial_cluster_token: str = ""
    """Mixed into the id of a bootstrapped cluster: give clusters with the same members
    different tokens (etcd's --initial-cluster-token)."""

    def raft_config(self) -> RaftConfig:
        """The core's configuration for these options (its other tunables at their defaults)."""
        return RaftConfig(
            node_id=self.node_id,
            election_ticks=self.election_ticks,
            heartbeat_ticks=self.heartbeat_ticks,
            tick_seconds=self.tick_seconds,
        )


@dataclass(slots=True)
class _Proposal:
    term: int
    future: asyncio.Future[Any]


def _expire(fut: asyncio.Future[Any], error: Callable[[], NodeError]) -> None:
    """A request's deadline passed: fail its future unless it was answered meanwhile."""
    if not fut.done():
        fut.set_exception(error())


def _log_snapshot(event: str, snapshot: Snapshot, started: float) -> None:
    fields = {
        "index": snapshot.meta.index,
        "bytes": len(snapshot.data),
        "seconds": round(time.monotonic() - started, 4),
    }
    log.info(event, extra={"fields": fields})


LeaderListener = Callable[[int, int], None]
"""Called with (leader_id, term) whenever the known leader changes (0 = none known)."""


class RaftNode:
    """A running Raft member around a ``StateMachine``; see the module docstring.

    ``log_store``, ``carrier`` and ``clock`` default to the production ones built from
    ``options``; ``raft_config`` to ``options.raft_config()``; ``run_blocking`` (how the state
    machine's slow calls leave the event loop) to a worker thread of the node's own.
    """

    def __init__(
        self,
        options: NodeOptions,
        state_machine: StateMachine | DurableStateMachine,
        *,
        metrics: NodeMetrics | None = None,
        rng: random.Random | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
        log_store: LogStore | None = None,
        carrier: MessageCarrier | None = None,
        clock: Clock = time.monotonic,
        raft_config: RaftConfig | None = None,
        run_blocking: RunBlocking | None = None,
    ) -> None:
        self.options = options
        self.node_id = options.node_id
        self.state_machine = state_machine
        self.metrics = metrics or NodeMetrics()
        self._rng = rng or random.Random()
        self._on_fatal = on_fatal
        self._clock = clock
        self._raft_config = raft_config or options.raft_config()
        self.log_store: LogStore = log_store or DiskLogStore(options.data_dir, options.node_id)
        self.carrier: MessageCarrier = carrier or PeerTransport(
            options.node_id,
            options.listen_peer,
            {i: a for i, a in options.members.items() if i != options.node_id},
            options.secret,
            on_refused=self.metrics.peer_refused.inc,
        )
        self._state_executor: ThreadPoolExecutor | None = None
        if run_blocking is None:
            self._state_executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"raft-state-{options.node_id}"
            )
            run_blocking = executor_runner(self._state_executor)
        self._keeper: StateKeeper = (
            DurableKeeper(state_machine, options.data_dir, run_blocking)
            if isinstance(state_machine, DurableStateMachine)
            else SnapshottingKeeper(state_machine)
        )
        self._compaction: asyncio.Task[None] | None = None
        self._materializing: asyncio.Task[None] | None = None
        self._installed_marker: Snapshot | None = None
        self.core: RaftCore | None = None
        self._tick_timer: asyncio.TimerHandle | None = None
        self._next_tick_at = 0.0
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._proposals: dict[int, _Proposal] = {}
        self._reads: dict[int, asyncio.Future[int]] = {}
        self._read_waiters: list[tuple[int, int, asyncio.Future[int]]] = []
        self._read_ids = itertools.count(self._rng.getrandbits(40) << 16)
        self._leader_listeners: list[LeaderListener] = []
        self._conf_listeners: list[Callable[[ConfChange], None]] = []
        self.member_peers: dict[int, Address] = dict(options.members)
        """Every member's peer address as this node knows it (initial members, then each
        applied change's ``peer`` context)."""
        self._promoting: asyncio.Task[None] | None = None
        self._save_cluster: asyncio.Future[None] | None = None
        self.cluster_id = NO_CLUSTER
        """The cluster this node belongs to (16 bytes; ``NO_CLUSTER`` until it joined one)."""
        self._state_waiters: list[asyncio.Future[None]] = []
        self._shown = SoftState(Role.FOLLOWER, 0, NO_NODE)
        self.applied_index = 0
        self._last_snapshot_index = 0
        self._leader_commit_seen = 0
        self.started = False
        self.stopping = False
        self.failure: BaseException | None = None

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Load (or bootstrap) the log, restore the state machine, listen and start ticking."""
        o = self.options
        state = await self.log_store.load()
        hard_state, snapshot, entries = state.hard_state, state.snapshot, state.entries
        self.cluster_id = state.cluster_id
        if state.is_empty and o.initial_cluster_state == "new":
            entries = RaftCore.bootstrap_entries(o.members)
            hard_state = HardState(term=1, commit=1)
            await self.log_store.persist(entries, hard_state)
            self.cluster_id = bootstrap_cluster_id(o.members, o.initial_cluster_token)
            await self.log_store.save_cluster_id(self.cluster_id)
            fields = {"voters": sorted(o.members), "cluster_id": self.cluster_id.hex()}
            log.info("bootstrapped new cluster", extra={"fields": fields})
        elif state.is_empty:
            log.info("empty data directory: waiting for the cluster's leader to send its state")
        snapshot, self.applied_index = await self._keeper.start(snapshot)
        self._last_snapshot_index = snapshot.meta.index if snapshot is not None else 0
        self.core = RaftCore(
            self._raft_config,
            rng=self._rng,
            hard_state=hard_state,
            snapshot=snapshot,
            entries=entries,
        )
        log.info(
            "storage loaded",
            extra={
                "fields": {
                    "term": hard_state.term,
                    "commit": hard_state.commit,
                    "snapshot_index": self._last_snapshot_index,
                    "applied": self.applied_index,
                    "last_index": self.core.last_index,
                }
            },
        )
        self.carrier.set_cluster_id(self.cluster_id, self._learned_cluster_id)
        await self.carrier.start(self._on_peer_message, self._on_peer_reachability)
        self._loop_task = asyncio.ensure_future(self._ready_loop())
        self._next_tick_at = asyncio.get_running_loop().time()
        self._schedule_tick()
        self.started = True
        self._wake.set()

    async def stop(self, transfer_timeout: float = 0.0) -> None:
        """Hand leadership over (bounded by ``transfer_timeout``), then stop and close storage."""
        if self.stopping:
            return
        if transfer_timeout > 0 and self.is_leader:
            await self.transfer_leadership(transfer_timeout)
        self._halt("the node is shutting down")
        if self._loop_task is not None:
            try:
                await asyncio.wait_for(self._loop_task, 5.0)
            except (TimeoutError, asyncio.CancelledError):
                log.warning("ready loop did not finish in time")
        for task in (self._compaction, self._materializing):
            if task is not None and not task.done():
                task.cancel()
        await self.carrier.close()
        await self.log_store.close()
        if self._state_executor is not None:
            self._state_executor.shutdown(wait=False)
        log.info("node stopped")

    def abandon(self) -> None:
        """Stop at once, as if the process died: nothing more is persisted, sent or answered
        (what the simulation does to crash a node; the log store is left as it is)."""
        self._halt("the node crashed")
        for task in (self._loop_task, self._compaction, self._materializing):
            if task is not None:
                task.cancel()

    def _halt(self, why: str) -> None:
        self.stopping = True
        if self._tick_timer is not None:
            self._tick_timer.cancel()
        for p in self._proposals.values():
            if not p.future.done():
                p.future.set_exception(OutcomeUnknown(why))
        self._proposals.clear()
        self._fail_reads(Unavailable(why))
        self._notify_state_waiters()
        self._wake.set()

    async def transfer_leadership(self, timeout: float, target: int | None = None) -> bool:
        """Ask the most caught-up follower (or ``target``) to take over; True once it has."""
        core = self._core()
        if core.role is not Role.LEADER:
            return False
        try:
            chosen = core.transfer_leadership(target)
        except NotLeaderError:
            return False
        if chosen == NO_NODE:
            return False
        self.metrics.leadership_transfers.inc()
        log.info(
            "transferring leadership",
            extra={"fields": {"target": chosen, "term": core.term}},
        )
        self._wake.set()
        deadline = asyncio.get_running_loop().time() + timeout
        # Wait for the step-down, then (briefly) to hear who leads now, for the log line.
        while core.role is Role.LEADER or core.leader_id in (NO_NODE, self.node_id):
            if not await self._state_change(deadline):
                break
        fields = {"target": chosen, "leader": core.leader_id, "term": core.term}
        if core.role is Role.LEADER:
            log.warning("leadership transfer timed out", extra={"fields": fields})
            return False
        if core.leader_id in (NO_NODE, self.node_id):
            log.warning("stepped down without a confirmed successor", extra={"fields": fields})
            return False
        log.info("leadership transferred", extra={"fields": fields})
        return True

    # -- application API -------------------------------------------------------------------

    async def propose(self, data: bytes, timeout: float) -> Any:
        """Replicate ``data``; returns the state machine's result once it applied here.

        Raises ``NotLeader`` (nothing done: forward to the leader), ``Unavailable`` (nothing
        done, retry) or ``OutcomeUnknown`` (it may or may not apply).
        """
        core = self._serving_core()
        try:
            index = core.propose(data)
        except NotLeaderError as e:
            raise NotLeader(e.leader_id if e.leader_id != self.node_id else NO_NODE) from e
        return await self._await_applied(index, core.term, timeout)

    async def change_membership(
        self,
        op: ConfChangeOp,
        node_id: int,
        context: Mapping[str, str],
        timeout: float,
        prev_index: int | None = None,
    ) -> ConfState:
        """Propose one membership change; returns the configuration once it applied here.

        ``context`` travels with the change (``"peer": "host:port"`` tells every member where
        to reach an added node). ``prev_index``, when given, must be the ``config_index`` in
        force. Raises like ``propose``, and ``ConfChangeError`` when the change is not allowed
        now (nothing done).
        """
        core = self._serving_core()
        if op is ConfChangeOp.ADD_LEARNER:
            members = core.conf.members()
            in_use = {m: {"peer": str(a)} for m, a in self.member_peers.items() if m in members}
            peer = context.get("peer")
            if peer:
                check_addresses_unused(node_id, {"peer": str(Address.parse(peer))}, in_use)
        try:
            index = core.propose_conf_change(op, node_id, dict(context), prev_index)
        except NotLeaderError as e:
            raise NotLeader(e.leader_id if e.leader_id != self.node_id else NO_NODE) from e
        result = await self._await_applied(index, core.term, timeout)
        assert isinstance(result, ConfState)
        return result

    async def _await_applied(self, index: int, term: int, timeout: float) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._proposals[index] = _Proposal(term, fut)
        self.metrics.proposals_pending.set(len(self._proposals))
        self._wake.set()
        timer = loop.call_later(
            timeout,
            _expire,
            fut,
            lambda: OutcomeUnknown(
                f"entry {index} was proposed but not applied within {timeout:.1f}s"
            ),
        )
        try:
            return await fut
        finally:
            timer.cancel()
            self._proposals.pop(index, None)
            self.metrics.proposals_pending.set(len(self._proposals))

    async def read_barrier(self, consistency: str, timeout: float) -> None:
        """Return once reading the local state machine satisfies ``consistency``.

        ``linearizable``: a ReadIndex round confirms the leader, then this node applies up to
        the read index. ``lease``: the leader answers from its lease (no round trip) when it
        holds one. ``stale``: immediately. Raises ``Unavailable`` when no leader can confirm.
        """
        if consistency == "stale":
            return
        if consistency not in CONSISTENCY_LEVELS:
            raise ValueError(f"unknown consistency {consistency!r}")
        core = self._serving_core()
        rid = next(self._read_ids)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reads[rid] = fut
        core.read_index(rid, self._clock(), lease=consistency == "lease")
        self._wake.set()
        timer = asyncio.get_running_loop().call_later(
            timeout,
            _expire,
            fut,
            lambda: Unavailable(f"no leader confirmed the read within {timeout:.1f}s"),
        )
        try:
            await fut
        finally:
            timer.cancel()
            self._reads.pop(rid, None)
            if fut.done() and not fut.cancelled():
                # Refused just as the wait timed out (after the shield let go of ``fut``):
                # the timeout is the answer, mark the refusal seen.
                fut.exception()

    async def wait_for_leader(self, timeout: float) -> int:
        """Wait (bounded) until some leader is known; returns its id, 0 on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.leader_id == NO_NODE and not self.stopping:
            if not await self._state_change(deadline):
                break
        return self.leader_id

    def add_leader_listener(self, listener: LeaderListener) -> None:
        self._leader_listeners.append(listener)

    async def export_snapshot(self) -> tuple[mmap.mmap, SnapshotMeta, str]:
        """A consistent snapshot of this node's applied state for a backup (see
        ``raftnode.snapshot_file``): the file's data, memory-mapped, its meta and SHA-256."""
        core = self._serving_core()
        if not isinstance(self._keeper, DurableKeeper):
            raise Unavailable("this node's state machine keeps no snapshot files")
        return await self._keeper.export(core.snapshot_meta, self.member_peers)

    def add_conf_listener(self, listener: Callable[[ConfChange], None]) -> None:
        """Called with each membership change as it applies here (its context included)."""
        self._conf_listeners.append(listener)

    def members(self) -> list[dict[str, Any]]:
        """Every member with its role and address; on the leader also match index, lag and
        whether it was heard from recently (``reachable``)."""
        core = self._core()
        conf = core.conf
        last = core.last_index
        out: list[dict[str, Any]] = []
        for member in sorted(conf.members()):
            address = self.member_peers.get(member)
            entry: dict[str, Any] = {
                "id": member,
                "role": "voter" if member in conf.voters else "learner",
                "peer": str(address) if address is not None else None,
                "leader": member == core.leader_id,
            }
            if core.role is Role.LEADER:
                pr = core.progress.get(member)
                match = last if member == self.node_id else (pr.match if pr else 0)
                entry.update(
                    match=match,
                    lag=max(0, last - match),
                    reachable=member == self.node_id
                    or (pr is not None and pr.recent_active and self.carrier.connected(member)),
                )
            out.append(entry)
        return out

    # -- state -----------------------------------------------------------------------------

    def _core(self) -> RaftCore:
        if self.core is None:
            raise Unavailable("the node is starting")
        return self.core

    def _serving_core(self) -> RaftCore:
        core = self._core()
        if self.stopping or self.failure is not None:
            raise Unavailable("the node is shutting down")
        return core

    @property
    def role(self) -> Role:
        return self.core.role if self.core is not None else Role.FOLLOWER

    @property
    def term(self) -> int:
        return self.core.term if self.core is not None else 0

    @property
    def leader_id(self) -> int:
        return self.core.leader_id if self.core is not None else NO_NODE

    @property
    def is_leader(self) -> bool:
        return self.core is not None and self.core.role is Role.LEADER

    @property
    def conf(self) -> ConfState:
        """The membership in force on this node (the latest configuration in its log)."""
        return self.core.conf if self.core is not None else ConfState()

    @property
    def config_index(self) -> int:
        """The log index of the configuration in force here (``prev_index`` compares to it)."""
        return self.core.config_index if self.core is not None else 0

    @property
    def membership(self) -> str:
        """``voter``, ``learner``, ``removed`` (the configuration no longer lists this node) or
        ``not_joined`` (started as ``existing`` and not yet contacted by a leader)."""
        conf = self.conf
        if self.core is not None and self.core.removed:
            return "removed"
        if self.node_id in conf.voters:
            return "voter"
        if self.node_id in conf.learners:
            return "learner"
        return "removed" if conf.members() else "not_joined"

    @property
    def commit_index(self) -> int:
        return self.core.commit_index if self.core is not None else 0

    @property
    def healthy(self) -> bool:
        return self.started and self.failure is None and self.log_store.healthy

    def has_quorum(self) -> bool:
        return self.core is not None and self.core.has_quorum_contact()

    def peer_connected(self, node_id: int) -> bool:
        """Whether this node's stream to ``node_id`` is up (a crashed peer shows as down)."""
        return self.carrier.connected(node_id)

    def leader_recently_heard(self) -> bool:
        """This node leads, or heard from a leader (or granted a vote to a candidate) within
        the last three heartbeats. A leader cut off by the network stays "connected" (no
        reset) but goes quiet: forwarding to it would hang until a timeout, while waiting lets
        the next leader take the write."""
        core = self.core
        if core is None:
            return False
        if core.role is Role.LEADER:
            return True
        return core.election_elapsed <= 3 * max(1, core.cfg.heartbeat_ticks)

    def replica_lag(self) -> int:
        """How many committed entries this node has not applied yet, as far as it knows."""
        return max(self._leader_commit_seen, self.commit_index) - self.applied_index

    def is_caught_up_replica(self, max_lag: int) -> bool:
        """A follower that knows a live leader and is at most ``max_lag`` entries behind."""
        core = self.core
        if core is None or core.role is not Role.FOLLOWER or core.leader_id == NO_NODE:
            return False
        if self.node_id not in core.conf.voters:
            return False  # learners catch up, removed nodes fall behind: neither serves reads
        if core.election_elapsed >= core.cfg.election_ticks:
            return False
        return self.replica_lag() <= max_lag

    def status(self) -> dict[str, Any]:
        """The node as it sees itself and its peers (for ``/status``)."""
        core = self.core
        peers: list[dict[str, Any]] = []
        if core is not None:
            last = core.last_index
            for pid in sorted(core.conf.members() - {self.node_id}):
                entry: dict[str, Any] = {
                    "id": pid,
                    "voter": pid in core.conf.voters,
                    "connected": self.carrier.connected(pid),
                }
                pr = core.progress.get(pid) if core.role is Role.LEADER else None
                if pr is not None:
                    entry.update(
                        match=pr.match,
                        next=pr.next,
                        lag=max(0, last - pr.match),
                        active=pr.recent_active,
                    )
                peers.append(entry)
        return {
            "id": self.node_id,
            "role": self.role.value,
            "membership": self.membership,
            "cluster_id": self.cluster_id.hex(),
            "term": self.term,
            "leader": self.leader_id,
            "commit": self.commit_index,
            "applied": self.applied_index,
            "last_index": core.last_index if core is not None else 0,
            "snapshot_index": self._last_snapshot_index,
            "lag": self.replica_lag(),
            "quorum": self.has_quorum() if self.is_leader else None,
            "healthy": self.healthy,
            "voters": sorted(core.conf.voters) if core is not None else [],
            "peers": peers,
        }

    # -- inputs ----------------------------------------------------------------------------

    def _schedule_tick(self) -> None:
        """Tick at a fixed rate; ticks missed while the loop was busy are skipped, not bunched."""
        loop = asyncio.get_running_loop()
        period = self.options.tick_seconds
        self._next_tick_at += period
        late = loop.time() - self._next_tick_at
        if late > 0:
            self._next_tick_at += math.ceil(late / period) * period
        self._tick_timer = loop.call_at(self._next_tick_at, self._on_tick_timer)

    def _on_tick_timer(self) -> None:
        if self.stopping:
            return
        self._schedule_tick()
        if self.core is None or self.failure is not None:
            return
        self.core.tick(self._clock())
        self._after_input()
        if self.core.role is Role.LEADER and self.core.conf.learners and self._promoting is None:
            self._promote_caught_up_learner()

    def _promote_caught_up_learner(self) -> None:
        """The leader makes a learner a voter once it is within the core's catch-up rule."""
        core = self._core()
        for learner in sorted(core.conf.learners):
            if core.learner_catch_up_refusal(learner) is None:
                self._promoting = asyncio.ensure_future(self._promote(learner))
                return

    async def _promote(self, learner: int) -> None:
        try:
            await self.change_membership(ConfChangeOp.ADD_VOTER, learner, {}, 5.0)
            log.info("learner promoted to voter", extra={"fields": {"node_id": learner}})
        except (NodeError, ConfChangeError) as e:
            log.info(
                "learner not promoted yet", extra={"fields": {"node_id": learner, "why": str(e)}}
            )
        finally:
            self._promoting = None

    def _on_peer_message(self, msg: Message) -> None:
        if self.core is None or self.stopping or self.failure is not None:
            return
        if msg.type is MessageType.APPEND and msg.term >= self.core.term:
            self._leader_commit_seen = max(self._leader_commit_seen, msg.commit)
        if msg.type is MessageType.HEARTBEAT_RESP:
            self.metrics.heartbeat_answered(msg)
        self.core.step(msg, self._clock())
        self._after_input()

    def _on_peer_reachability(self, peer_id: int, reachable: bool) -> None:
        """The carrier saw a peer's process go (stream reset, reconnect refused) or come back:
        the core may replace a dead leader early (``RaftCore.report_peer_lost``)."""
        if self.core is None or self.stopping or self.failure is not None:
            return
        if reachable:
            self.core.report_peer_reachable(peer_id, self._clock())
        else:
            self.core.report_peer_lost(peer_id, self._clock())
        self._after_input()

    def _after_input(self) -> None:
        assert self.core is not None
        if self.core.has_ready():
            self._wake.set()

    # -- the ready loop --------------------------------------------------------------------

    async def _ready_loop(self) -> None:
        core = self._core()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while core.has_ready() and not self.stopping:
                    rd = core.ready()
                    await self._handle_ready(rd)
                    core.advance(rd)
                    if self._installed_marker is not None:
                        # Keep only a marker of an installed snapshot: its data is in the
                        # durable state machine now.
                        core.compact(self._installed_marker)
                        self._installed_marker = None
                    self._maybe_compact()
                if self.stopping:
                    return
        except Exception as e:  # storage failure or a bug: stop serving, let systemd restart
            self._fail(e)

    def _fail(self, e: BaseException) -> None:
        if self.failure is not None:
            return
        self.failure = e
        log.critical("node failed; it stops serving", exc_info=e)
        self._fail_reads(Unavailable("the node failed"))
        if self._on_fatal is not None:
            self._on_fatal(e)

    async def _handle_ready(self, rd: Ready) -> None:
        if rd.soft_state is not None:
            self._show(rd.soft_state)
        if rd.early_messages:
            # The leader's appends go out while its own fsync runs (see Ready).
            self.carrier.send(rd.early_messages)
            self.metrics.heartbeats_sent(rd.early_messages)
        if rd.snapshot is not None:
            await self._install_snapshot(rd.snapshot)
        if rd.snapshot_wanted and self._materializing is None:
            self._materializing = asyncio.ensure_future(self._materialize())
        if rd.entries or rd.hard_state is not None:
            seconds = await self.log_store.persist(rd.entries, rd.hard_state)
            if rd.entries:
                self.metrics.fsync_seconds.observe(seconds)
                self.metrics.persist_entries.observe(len(rd.entries))
        if self.stopping:
            return  # crashed or stopped while persisting: answer nothing more
        if rd.messages:
            self.carrier.send(rd.messages)
            self.metrics.heartbeats_sent(rd.messages)
        for entry in rd.committed_entries:
            self._apply(entry)
        if rd.committed_entries:
            self._keeper.end_batch(self.applied_index)
        for rs in rd.read_states:
            fut = self._reads.get(rs.request_id)
            if fut is None or fut.done():
                continue
            if rs.error is not None:
                fut.set_exception(Unavailable(f"read refused: {rs.error}"))
            elif rs.index <= self.applied_index:
                fut.set_result(rs.index)
            else:
                heapq.heappush(self._read_waiters, (rs.index, rs.request_id, fut))
        self._release_read_waiters()
        m = self.metrics
        m.commit_index.set(self.commit_index)
        m.applied_index.set(self.applied_index)
        m.last_index.set(self.core.last_index if self.core else 0)

    def _apply(self, entry: Entry) -> None:
        if entry.index <= self.applied_index:
            return
        result: Any = None
        if entry.type is EntryType.CONF_CHANGE:
            change = ConfChange.decode(entry.data)
            self._apply_conf_change(change)
            result = change.result
        elif entry.data:
            result = self._keeper.apply(entry.index, entry.data)
        self.applied_index = entry.index
        p = self._proposals.pop(entry.index, None)
        if p is not None and not p.future.done():
            if p.term == entry.term:
                p.future.set_result(result)
            else:
                p.future.set_exception(
                    Unavailable(
                        "leadership changed before the write committed; nothing was written"
                    )
                )

    def _apply_conf_change(self, change: ConfChange) -> None:
        addr = change.context.get("peer")
        if addr and change.node_id in change.result.members():
            self.member_peers[change.node_id] = Address.parse(addr)
            if change.node_id != self.node_id:
                self.carrier.add_peer(change.node_id, Address.parse(addr))
        if change.node_id and change.node_id not in change.result.members():
            self.member_peers.pop(change.node_id, None)
            # Keep the link a while: the leader tells the removed node (REMOVED) when it next
            # hears from it, which it will if it missed the entry that removed it.
            asyncio.get_running_loop().call_later(
                REMOVED_PEER_LINGER_SECONDS, self._forget_peer, change.node_id
            )
        for listener in list(self._conf_listeners):
            try:
                listener(change)
            except Exception:
                log.exception("membership listener failed")
        log.info(
            "configuration applied",
            extra={
                "fields": {
                    "op": change.op.name.lower(),
                    "node_id": change.node_id,
                    **change.result.to_json(),
                }
            },
        )

    def _learned_cluster_id(self, cluster_id: bytes) -> None:
        """A peer told a node that had none which cluster it joined: remember it durably."""
        self.cluster_id = cluster_id
        log.info("joined cluster", extra={"fields": {"cluster_id": cluster_id.hex()}})
        self._save_cluster = asyncio.ensure_future(self.log_store.save_cluster_id(cluster_id))

    def _forget_peer(self, node_id: int) -> None:
        if not self.stopping and node_id not in self.conf.members():
            self.carrier.remove_peer(node_id)
            self.metrics.forget_peer(node_id)

    async def _install_snapshot(self, snapshot: Snapshot) -> None:
        """A snapshot from the leader replaces the state: the state machine takes it first,
        then the log store keeps what the keeper says (the snapshot, or a marker of it)."""
        meta = snapshot.meta
        started = time.monotonic()
        kept = await self._keeper.install(snapshot)
        await self.log_store.install_snapshot(kept)
        if not kept.complete:
            self._installed_marker = kept
        self.applied_index = self._last_snapshot_index = meta.index
        self.metrics.snapshot_bytes.observe(len(snapshot.data))
        self.metrics.snapshots.labels(kind="received").inc()
        for index in [i for i in self._proposals if i <= meta.index]:
            p = self._proposals.pop(index)
            if not p.future.done():
                p.future.set_exception(OutcomeUnknown("a snapshot replaced the pending write"))
        log.info(
            "snapshot installed",
            extra={
                "fields": {
                    "index": meta.index,
                    "term": meta.term,
                    "bytes": len(snapshot.data),
                    "seconds": round(time.monotonic() - started, 4),
                }
            },
        )

    def _maybe_compact(self) -> None:
        """Every ``snapshot_every_entries`` applied entries, compact the log in the background
        (the ready loop never waits for it)."""
        core = self._core()
        if self.applied_index - self._last_snapshot_index < self.options.snapshot_every_entries:
            return
        if core.applied_index < self.applied_index or self._compaction is not None:
            return
        self._compaction = asyncio.ensure_future(self._compact())

    async def _compact(self) -> None:
        core = self._core()
        started = time.monotonic()
        try:
            snapshot = await self._keeper.compaction_snapshot(
                self.applied_index, core.snapshot_meta
            )
            if snapshot is None or snapshot.meta.index <= self._last_snapshot_index:
                return
            await self.log_store.save_snapshot(snapshot)
            if self.stopping or snapshot.meta.index <= self._last_snapshot_index:
                return
            core.compact(snapshot)
            self._last_snapshot_index = snapshot.meta.index
        except ValueError as e:
            # A snapshot from the leader was installed while this compaction ran: the log no
            # longer holds its index, or storage already has a newer snapshot. Nothing to do.
            log.info("log compaction skipped", extra={"fields": {"why": str(e)}})
            return
        except Exception as e:
            self._fail(e)
            return
        finally:
            self._compaction = None
        self.metrics.snapshot_bytes.observe(len(snapshot.data))
        self.metrics.snapshots.labels(kind="taken").inc()
        _log_snapshot("log compacted", snapshot, started)

    async def _materialize(self) -> None:
        """A follower needs a complete snapshot: take one off the loop and offer it."""
        core = self._core()
        started = time.monotonic()
        try:
            snapshot = await self._keeper.materialize(core.snapshot_meta)
            if snapshot is None or self.stopping:
                return
            if snapshot.meta.index > core.applied_index:
                return  # the core is still replaying what the store holds: asked again later
            core.compact(snapshot)
            self._wake.set()
        except ValueError as e:
            # The log moved past the snapshot's index meanwhile; the follower asks again.
            log.info("snapshot not offered", extra={"fields": {"why": str(e)}})
            return
        except Exception as e:
            self._fail(e)
            return
        finally:
            self._materializing = None
        self.metrics.snapshots.labels(kind="materialized").inc()
        _log_snapshot("snapshot materialized for a follower", snapshot, started)

    def _release_read_waiters(self) -> None:
        while self._read_waiters and self._read_waiters[0][0] <= self.applied_index:
            index, _, fut = heapq.heappop(self._read_waiters)
            if not fut.done():
                fut.set_result(index)

    def _fail_reads(self, exc: Exception) -> None:
        for fut in self._reads.values():
            if not fut.done():
                fut.set_exception(exc)
        self._reads.clear()
        self._read_waiters.clear()

    # -- what the node shows ---------------------------------------------------------------

    def _show(self, now: SoftState) -> None:
        """Update metrics, logs and listeners from the core's new soft state."""
        before, self._shown = self._shown, now
        m = self.metrics
        m.term.set(now.term)
        m.set_role(now.role.value)
        m.set_leader(now.leader_id)
        fields = {"role": now.role.value, "term": now.term, "leader": now.leader_id}
        if before.role is not now.role:
            if now.role is Role.CANDIDATE:
                m.elections.inc()
            if now.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
                log.info("election started", extra={"fields": fields})
            elif now.role is Role.LEADER:
                log.info("became leader", extra={"fields": fields})
            else:
                log.info("became follower", extra={"fields": fields})
        if before.leader_id != now.leader_id:
            if now.leader_id != NO_NODE:
                m.leader_changes.inc()
                self._leader_commit_seen = 0
            log.info(
                "leader changed",
                extra={"fields": {**fields, "previous": before.leader_id}},
            )
            for listener in list(self._leader_listeners):
                try:
                    listener(now.leader_id, now.term)
                except Exception:
                    log.exception("leader listener failed")
        self._notify_state_waiters()
        if now.role is Role.LEADER:
            self._update_lag_metrics()

    async def _state_change(self, deadline: float) -> bool:
        """Wait until the shown state changes or ``deadline`` (loop time) passes; False then."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0 or self.stopping:
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._state_waiters.append(fut)
        try:
            await asyncio.wait_for(fut, remaining)
        except TimeoutError:
            return False
        return True

    def _notify_state_waiters(self) -> None:
        waiters, self._state_waiters = self._state_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _update_lag_metrics(self) -> None:
        core = self.core
        if core is None or core.role is not Role.LEADER:
            return
        last = core.last_index
        for pid, pr in core.progress.items():
            if pid != self.node_id:
                self.metrics.replication_lag.labels(peer=str(pid)).set(max(0, last - pr.match))

    def refresh_metrics(self) -> None:
        """Update gauges that are not event driven (called before ``/metrics`` renders)."""
        self._update_lag_metrics()
        if self.core is not None:
            for pid in self.core.conf.members() - {self.node_id}:
                self.metrics.peer_connected.labels(peer=str(pid)).set(
                    1 if self.carrier.connected(pid) else 0
                )
