"""The runtime: one ``RaftCore`` driven with a log store and a message carrier on one event loop.

Inputs reach the core as they happen (a tick every ``tick_seconds``, each peer message, each
proposal or read). One ready loop turns the core's outputs into effects, always in the order
``Ready`` prescribes: send the leader's early appends, persist (one durable batch), send the rest,
apply, then ``advance``. While a persist is in flight the core keeps stepping messages and ticks,
and everything that accumulated meanwhile goes into the next ``Ready``: persisted as one batch
(group commit), its messages sent then. So what the core sends waits for the fsync in flight,
heartbeats included: a leader whose fsync outlasts an election timeout loses its followers.

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
import contextlib
import logging
import mmap
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from raftnode.bootstrap import load_or_bootstrap
from raftnode.compaction import SnapshotDriver
from raftnode.consistency import Consistency
from raftnode.failpoints import READS_SKIP_READ_INDEX
from raftnode.member_directory import MemberDirectory
from raftnode.metrics import NodeMetrics
from raftnode.node_errors import NodeError, NotLeader, OutcomeUnknown, Unavailable
from raftnode.node_options import Clock, LeaderListener, NodeOptions
from raftnode.node_status import refresh_gauges, show_soft_state
from raftnode.node_view import NodeView
from raftnode.pending import PendingRequests
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
    Message,
    MessageType,
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
from raftnode.storage.log_store import DiskLogStore, LogStore
from raftnode.timing import ChangeNotifier, Ticker
from raftnode.transport.auth import NO_CLUSTER
from raftnode.transport.carrier import MessageCarrier
from raftnode.transport.peer import PeerTransport
from raftnode.transport.peer_tls import PeerTls

log = logging.getLogger(__name__)

__all__ = [
    "NodeError",
    "NodeOptions",
    "NotLeader",
    "OutcomeUnknown",
    "RaftNode",
    "Unavailable",
]

CONSISTENCY_LEVELS = tuple(Consistency)


_FROM_LEADER = frozenset({MessageType.APPEND, MessageType.HEARTBEAT})
"""Messages only a leader sends, that tell its commit index (``RaftNode._note_leader_commit``)."""


class RaftNode(NodeView):
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
        self.peer_tls = PeerTls(options.peer_tls) if options.peer_tls is not None else None
        """The peer certificates in force (SIGHUP: ``reload``); None without ``peer_tls``."""
        self.carrier: MessageCarrier = carrier or PeerTransport(
            options.node_id,
            options.listen_peer,
            {i: a for i, a in options.members.items() if i != options.node_id},
            options.secret,
            on_refused=self.metrics.peer_refused.inc,
            on_auth_failure=lambda reason: self.metrics.peer_auth_failures.labels(reason).inc(),
            tls=self.peer_tls,
            min_version=options.peer_min_protocol,
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
        self.core: RaftCore | None = None
        self._ticker = Ticker(options.tick_seconds, self._on_tick)
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._pending = PendingRequests(self.metrics, self._rng.getrandbits(40) << 16)
        self._leader_listeners: list[LeaderListener] = []
        self._members = MemberDirectory(self.node_id, options.members, self.carrier, self.metrics)
        self.member_peers = self._members.peers
        """Every member's peer address as this node knows it (initial members, then each
        applied change's ``peer`` context)."""
        self._promoting: asyncio.Task[None] | None = None
        self._save_cluster: asyncio.Future[None] | None = None
        self.cluster_id = NO_CLUSTER
        """The cluster this node belongs to (16 bytes; ``NO_CLUSTER`` until it joined one)."""
        self._changes = ChangeNotifier()
        self._shown = SoftState(Role.FOLLOWER, 0, NO_NODE)
        self.applied_index = 0
        self._leader_commit_seen = 0
        self._leader_commit_term = 0
        self.started = False
        self.stopping = False
        self.failure: BaseException | None = None
        self._snapshots = SnapshotDriver(
            self._keeper,
            self.log_store,
            self.metrics,
            options.snapshot_every_entries,
            on_failure=self._fail,
            wake=self._wake,
            applied_index=lambda: self.applied_index,
        )

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Load (or bootstrap) the log, restore the state machine, listen and start ticking."""
        state = await load_or_bootstrap(self.log_store, self.options)
        hard_state, entries, self.cluster_id = state.hard_state, state.entries, state.cluster_id
        snapshot, self.applied_index = await self._keeper.start(state.snapshot)
        self._snapshots.last_index = snapshot.meta.index if snapshot is not None else 0
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
                    "snapshot_index": self._snapshots.last_index,
                    "applied": self.applied_index,
                    "last_index": self.core.last_index,
                }
            },
        )
        self.carrier.set_cluster_id(self.cluster_id, self._learned_cluster_id)
        await self.carrier.start(self._on_peer_message, self._on_peer_reachability)
        self._loop_task = asyncio.ensure_future(self._ready_loop())
        self._ticker.start()
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
        for task in [*self._snapshots.tasks(), *self._keeper.tasks()]:
            if not task.done():
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
        for task in [self._loop_task, *self._snapshots.tasks(), *self._keeper.tasks()]:
            if task is not None:
                task.cancel()

    def _halt(self, why: str) -> None:
        self.stopping = self._snapshots.stopping = True
        self._ticker.stop()
        self._pending.fail_proposals(why)
        self._pending.fail_reads(Unavailable(why))
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
            if not await self.changed(deadline):
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
        self._wake.set()
        return await self._pending.applied(index, core.term, timeout)

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
            self._members.check_peer_address_free(node_id, context, core.conf.members())
        try:
            index = core.propose_conf_change(op, node_id, dict(context), prev_index)
        except NotLeaderError as e:
            raise NotLeader(e.leader_id if e.leader_id != self.node_id else NO_NODE) from e
        self._wake.set()
        result = await self._pending.applied(index, core.term, timeout)
        assert isinstance(result, ConfState)
        return result

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
        if READS_SKIP_READ_INDEX in self.options.failpoints:
            return  # broken on purpose (raftnode.failpoints): no leader confirms this read
        core = self._serving_core()

        def ask(request_id: int) -> None:
            core.read_index(request_id, self._clock(), lease=consistency == "lease")
            self._wake.set()

        await self._pending.read(ask, timeout)

    async def wait_for_leader(self, timeout: float) -> int:
        """Wait (bounded) until some leader is known; returns its id, 0 on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.leader_id == NO_NODE and not self.stopping:
            if not await self.changed(deadline):
                break
        return self.leader_id

    def add_leader_listener(self, listener: LeaderListener) -> Callable[[], None]:
        """Called with (leader id, term) whenever either changes; returns the call that
        removes the listener again."""
        self._leader_listeners.append(listener)
        return lambda: _discard(self._leader_listeners, listener)

    async def export_snapshot(self) -> tuple[mmap.mmap, SnapshotMeta, str]:
        """A consistent snapshot of this node's applied state for a backup (see
        ``raftnode.snapshot_file``): the file's data, memory-mapped, its meta and SHA-256."""
        core = self._serving_core()
        if not isinstance(self._keeper, DurableKeeper):
            raise Unavailable("this node's state machine keeps no snapshot files")
        return await self._keeper.export(core.snapshot_meta, self.member_peers)

    def add_conf_listener(self, listener: Callable[[ConfChange], None]) -> Callable[[], None]:
        """Called with each membership change as it applies here (its context included);
        returns the call that removes the listener again."""
        return self._members.add_listener(listener)

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

    # -- inputs ----------------------------------------------------------------------------

    def _on_tick(self) -> None:
        if self.stopping:
            return
        if self.core is None or self.failure is not None:
            return
        self.core.tick(self._clock())
        self._after_input()
        if self.core.role is Role.LEADER and self.core.conf.learners and self._promoting is None:
            self._promote_caught_up_learner()

    def _promote_caught_up_learner(self) -> None:
        """The leader makes a learner a voter once it is within the core's catch-up rule."""
        caught_up = self._core().status().learners_caught_up
        if caught_up:
            self._promoting = asyncio.ensure_future(self._promote(min(caught_up)))

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
        if msg.type in _FROM_LEADER and msg.term >= self.core.term:
            self._note_leader_commit(msg)
        if msg.type is MessageType.HEARTBEAT_RESP:
            self.metrics.heartbeat_answered(msg)
        self.core.step(msg, self._clock())
        self._after_input()

    def _note_leader_commit(self, msg: Message) -> None:
        """The leader's commit index, for ``replica_lag``. An append carries it in ``commit``;
        a heartbeat's ``commit`` is capped at what the leader knows this node holds (which,
        right after this node restarted, is where it stood when it stopped), so its ``index``
        carries the leader's own (0 from a leader that predates the field). Kept per term: a
        new leader starts it over."""
        if msg.term != self._leader_commit_term:
            self._leader_commit_term, self._leader_commit_seen = msg.term, 0
        told = msg.commit if msg.type is MessageType.APPEND else max(msg.commit, msg.index)
        self._leader_commit_seen = max(self._leader_commit_seen, told)

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
        # A tick, a message or a peer coming or going may change what waiters look at
        # (whether the leader was heard from recently, a peer's stream): tell them.
        self._notify_state_waiters()

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
                    self._notify_state_waiters()  # commit and applied indexes moved
                    self._snapshots.after_advance(core, self.applied_index)
                if self.stopping:
                    return
        except Exception as e:  # storage failure or a bug: stop serving, let systemd restart
            self._fail(e)

    def _fail(self, e: BaseException) -> None:
        if self.failure is not None:
            return
        self.failure = e
        log.critical("node failed; it stops serving", exc_info=e)
        self._pending.fail_reads(Unavailable("the node failed"))
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
            await self._snapshots.install(rd.snapshot)
            self.applied_index = rd.snapshot.meta.index
            self._pending.replaced_up_to(rd.snapshot.meta.index)
        if rd.snapshot_wanted:
            self._snapshots.want_complete(self._core())
        applied_early = 0
        if rd.durable_committed and rd.snapshot is None and (rd.entries or rd.hard_state):
            # Committed and already durable here: answer them while this batch's fsync runs.
            applied_early = rd.durable_committed
            self._apply_batch(rd.committed_entries[:applied_early])
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
        self._apply_batch(rd.committed_entries[applied_early:])
        self._pending.read_states(rd.read_states, self.applied_index)
        m = self.metrics
        m.commit_index.set(self.commit_index)
        m.applied_index.set(self.applied_index)
        m.last_index.set(self.core.last_index if self.core else 0)

    def _apply_batch(self, entries: list[Entry]) -> None:
        for entry in entries:
            self._apply(entry)
        if entries:
            self._keeper.end_batch(self.applied_index)

    def _apply(self, entry: Entry) -> None:
        if entry.index <= self.applied_index:
            return
        result: Any = None
        if entry.type is EntryType.CONF_CHANGE:
            change = ConfChange.decode(entry.data)
            self._members.apply(change, lambda node: self.stopping or node in self.conf.members())
            result = change.result
        elif entry.data:
            result = self._keeper.apply(entry.index, entry.data)
        self.applied_index = entry.index
        self._pending.answer(entry.index, entry.term, result)

    def _learned_cluster_id(self, cluster_id: bytes) -> None:
        """A peer told a node that had none which cluster it joined: remember it durably."""
        self.cluster_id = cluster_id
        log.info("joined cluster", extra={"fields": {"cluster_id": cluster_id.hex()}})
        self._save_cluster = asyncio.ensure_future(self.log_store.save_cluster_id(cluster_id))

    # -- what the node shows ---------------------------------------------------------------

    def _show(self, now: SoftState) -> None:
        """Update metrics, logs and listeners from the core's new soft state."""
        before, self._shown = self._shown, now
        show_soft_state(self.metrics, before, now)
        if before.leader_id != now.leader_id:
            for listener in list(self._leader_listeners):
                try:
                    listener(now.leader_id, now.term)
                except Exception:
                    log.exception("leader listener failed")
        self._notify_state_waiters()

    async def changed(self, deadline: float) -> bool:
        """Wait until this node's state may have changed: its role, term or leader, its commit
        or applied index, a peer's stream, or the time since it heard from the leader (each
        tick). Returns False once ``deadline`` passes or the node stops. ``deadline`` is on the
        event loop's clock, which is ``time.monotonic()`` on asyncio and uvloop (and virtual
        time in the simulation).

        Callers re-check their own condition after each wake-up (hashicorp/raft's observers
        and ``LeaderCh`` play this part there): ``while not ready(): if not await
        node.changed(deadline): give up``.
        """
        return await self._changes.wait(deadline)

    def _notify_state_waiters(self) -> None:
        if self.stopping:
            self._changes.close()
        else:
            self._changes.notify()

    def refresh_metrics(self) -> None:
        """Update gauges that are not event driven (called before ``/metrics`` renders)."""
        if self.core is not None:
            refresh_gauges(self.metrics, self.core.status(), self.carrier.connected)


def _discard(listeners: list[Any], listener: Any) -> None:
    with contextlib.suppress(ValueError):
        listeners.remove(listener)
