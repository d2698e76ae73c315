"""A deterministic Raft cluster simulation that drives the real runtime.

Each simulated member is a real ``RaftNode`` (``raftnode/node.py``: its ready loop, fsync
ordering, apply path, proposal and read bookkeeping) on in-memory stand-ins for its disk,
network and state machine (``raftnode.testing``'s, watched and made faulty by
``tests/sim/stand_ins.py`` and ``Network`` below), all on one ``VirtualTimeLoop``: time
jumps from one timer to the next, so a seed replays exactly and a run takes no wall-clock
waiting. Everything random comes from one ``random.Random(seed)``.

The network drops, delays, reorders, duplicates and partitions messages; disk writes take
simulated time; nodes crash (losing everything not yet durable, also in the middle of a write)
and restart from their simulated disk; clients write and read (linearizable and lease) through
the node API at random nodes; the leader is asked to transfer leadership and to change
membership. After the fault phase everything heals and the cluster must elect a leader and
commit new proposals on every member within a bounded simulated time. ``SafetyChecker`` checks
Raft's properties as events happen.

Peer loss is reported as ``PeerTransport`` reports it: when a node crashes, each live node whose
link to it is not cut hears "peer lost" shortly after (after the last message already on its way
from the dead node, as a TCP reset follows the data before it), and "reachable" once the node
is back. Flapping links (``flap_rate``) are the adversarial case: a link between two live nodes
drops everything for a few ticks and both ends are told the other is lost, which the real
transport would never say of a live process; lease reads must stay linearizable all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from raftnode.config import Address
from raftnode.kv.commands import (
    HISTORY_FORMAT,
    ApplyResult,
    Command,
    CommandResult,
    Compact,
    CompactResult,
    Compare,
    FormatUpgrade,
    Txn,
    TxnOp,
    TxnResult,
)
from raftnode.kv.lessor import LeaseNotFound, LeaseRefused, Lessor
from raftnode.kv.service import KeyValueService, UpgradeInProgress
from raftnode.metrics import NodeMetrics
from raftnode.node import NodeError, NodeOptions, NotLeader, OutcomeUnknown, RaftNode
from raftnode.raft import (
    ConfChangeError,
    ConfChangeOp,
    HardState,
    Message,
    MessageType,
    RaftConfig,
    RaftCore,
    Role,
)
from raftnode.testing.memory_log import MemoryDisk
from raftnode.testing.memory_network import MemoryNetwork
from raftnode.testing.virtual_time import VirtualTimeLoop
from raftnode.transport.carrier import Deliver
from tests.sim.checker import TXN_KEYS, SafetyChecker, SafetyViolation
from tests.sim.stand_ins import SimKeyValueStore, SimLogStore, SimStateMachine

T = TypeVar("T")

TICK = 0.05
"""Seconds per Raft tick, as in production; every simulated delay is a multiple of it."""
ELECTION_TICKS = 10
REQUEST_TIMEOUT = 20 * TICK
KEYED_WRITE_ATTEMPTS = 6
"""How many times a client sends a keyed write before it gives up."""
LEASE_TTLS = (1, 2)
"""The TTLs (seconds) the simulated lease clients ask for."""


class SimNode:
    """One member: its disk survives crashes; the runtime and state machine do not."""

    def __init__(self, sim: Simulation, node_id: int, disk: MemoryDisk):
        self.sim = sim
        self.id = node_id
        self.disk = disk
        self.alive = False
        self.clock_rate = 1.0
        self.runtime: RaftNode
        self.sm: SimStateMachine | SimKeyValueStore
        self.checked_commit = 0
        self.was_leader_term = 0
        self.lessor: Lessor | None = None

    def boot(self) -> None:
        sim = self.sim
        data_dir = Path("/nonexistent")
        if sim.kv_dir is not None:
            data_dir = sim.kv_dir / f"n{self.id}"
            data_dir.mkdir(exist_ok=True)
            self.sm = SimKeyValueStore(sim, self, data_dir / "kv.sqlite")
        else:
            self.sm = SimStateMachine(sim, self)
        options = NodeOptions(
            node_id=self.id,
            data_dir=data_dir,
            listen_peer=Address("sim", self.id),
            members={},
            secret=b"",
            tick_seconds=TICK,
            election_ticks=ELECTION_TICKS,
            snapshot_every_entries=sim.snapshot_every,
            initial_cluster_state="existing",
        )
        rate = self.clock_rate
        loop = sim.loop
        self.runtime = RaftNode(
            options,
            self.sm,
            metrics=sim.metrics[self.id],
            rng=random.Random(sim.rng.random()),
            on_fatal=lambda exc: sim.fail(f"node {self.id} failed: {exc!r}", exc),
            log_store=SimLogStore(sim, self.id, self.disk),
            carrier=sim.network.carrier(self.id),
            clock=lambda: loop.time() * rate,
            raft_config=sim.raft_config(self.id),
            run_blocking=sim.run_blocking,
        )
        self.checked_commit = self.disk.snapshot.meta.index if self.disk.snapshot else 0
        self.was_leader_term = 0
        self.alive = True
        sim.spawn(self.runtime.start())
        if isinstance(self.sm, SimKeyValueStore):
            # The leader's lease expiry, as the server runs it, on the simulation's clock.
            service = KeyValueService(
                self.runtime, self.sm.store, leader_wait=REQUEST_TIMEOUT, clock=loop.time
            )
            self.lessor = Lessor(service, check_seconds=2 * TICK)
            self.lessor.start()

    def crash(self) -> None:
        self.alive = False
        if self.lessor is not None:
            self.lessor.close()
            self.lessor = None
        self.runtime.abandon()
        self.sm.close()
        self.sim.network.detach(self.id)

    def clock(self) -> float:
        """This node's clock, as its runtime reads it."""
        return self.sim.loop.time() * self.clock_rate

    @property
    def role(self) -> Role:
        return self.runtime.role

    def check(self) -> None:
        """Check what the core did since the last look: commits, and a new leadership."""
        core = self.runtime.core
        if not self.alive or core is None:
            return
        self.check_commits()
        if core.role is Role.LEADER and self.was_leader_term != core.term:
            self.was_leader_term = core.term
            checker = self.sim.checker
            lo = max(core.log.first_index(), 1)
            log_terms = {i: core.log.term(i) for i in range(lo, checker.max_committed + 1)}
            checker.on_leader(self.id, core.term, log_terms)
            self.sim.trace(self.id, f"became leader of term {core.term}")
            self.sim.on_new_leader()

    def check_commits(self) -> None:
        core = self.runtime.core
        if core is None or core.commit_index <= self.checked_commit:
            return
        start = max(self.checked_commit + 1, core.log.first_index())
        for index in range(start, core.commit_index + 1):
            self.sim.checker.on_commit(self.id, core.log.entry(index))
        self.checked_commit = core.commit_index


class Network(MemoryNetwork):
    """``MemoryNetwork`` with the simulation's faults: each message dropped, duplicated and
    delayed at random (so reordered), links that flap, and every delivery traced and checked."""

    def __init__(self, sim: Simulation):
        super().__init__(sim.loop)
        self.sim = sim
        self.drop_rate = 0.0
        self.dup_rate = 0.0
        self.max_delay = 0.3
        self.flapping: set[frozenset[int]] = set()
        self.flaps = 0

    def _reconnect_delay(self) -> float:
        return TICK * (0.5 + self.sim.rng.random())

    def _loss_delay(self) -> float:
        return TICK * (0.02 + self.sim.rng.random())

    def _reporting(self, to: int, peer: int, reachable: bool) -> None:
        self.sim.trace(to, f"told n{peer} is {'reachable' if reachable else 'lost'}")

    def flap(self, a: int, b: int, ticks: int) -> None:
        """Reset the link between live nodes ``a`` and ``b``: nothing passes for ``ticks`` and
        both are told the other is lost (as if reconnects were refused), then it comes back."""
        pair = frozenset((a, b))
        if pair in self.cut or pair in self.flapping:
            return
        self.flapping.add(pair)
        self.flaps += 1
        self.sim.trace(0, f"link n{a}-n{b} flaps for {ticks} ticks")
        for me, peer in ((a, b), (b, a)):
            callback = self.reachability.get(me)
            if callback is not None:
                self.sim.trace(me, f"told n{peer} is lost (flapping link)")
                callback(peer, False)

        def restore() -> None:
            self.flapping.discard(pair)
            for me, peer in ((a, b), (b, a)):
                self.report(me, peer, True, 0.0)

        self.sim.loop.call_later(ticks * TICK, restore)

    def blocked(self, a: int, b: int) -> bool:
        return super().blocked(a, b) or frozenset((a, b)) in self.flapping

    def _dropped(self, m: Message) -> bool:
        return self.sim.rng.random() < self.drop_rate

    def _copies(self, m: Message) -> int:
        return 2 if self.sim.rng.random() < self.dup_rate else 1

    def _delay(self, m: Message) -> float:
        return TICK * (0.01 + self.sim.rng.random() * self.max_delay)

    def _hand_over(self, m: Message, receiver: Deliver) -> None:
        sim = self.sim
        sim.steps += 1
        if m.leader_lost and m.type is MessageType.PRE_VOTE:
            sim.fast_prevotes += 1
        sim.events.append((sim.loop.time(), m.to, m))
        receiver(m)
        sim.nodes[m.to].check()

    def heal(self) -> None:
        super().heal()
        self.flapping.clear()


class Simulation:
    """One seeded run. ``fast_leader_loss`` switches the core's fast leader-loss path (see
    ``RaftCore.report_peer_lost``); ``flap_rate`` (per tick) overrides the seed's choice of how
    often a link flaps and ``concurrent_flaps`` whether a flap may start while another one is
    under way (several at once can cut the leader off from a majority, which is what its death
    looks like); ``other_faults=False`` leaves only those flaps (and the network's drops,
    duplicates and delays), so that every election after the first is one a flap caused;
    ``leader_crash_rate`` (per tick) crashes the leader, to time failovers (a crashed node
    restarts about 5 ticks later when other faults are off).

    ``kv_store`` runs the production key-value store (``SimKeyValueStore``) as every node's state
    machine instead of ``SimStateMachine``, and half of the clients' writes carry an idempotency
    key and are retried (after a timeout, a refusal, a crash, sometimes sent twice at once or
    again after an answer) until answered; ``SafetyChecker.exactly_once`` checks each key takes
    effect once and every answer is its first outcome."""

    def __init__(
        self,
        seed: int,
        size: int = 3,
        fault_ticks: int = 250,
        liveness_ticks: int = 120,
        *,
        fast_leader_loss: bool = True,
        flap_rate: float | None = None,
        other_faults: bool = True,
        concurrent_flaps: bool = True,
        leader_crash_rate: float = 0.0,
        kv_store: bool = False,
    ):
        self.seed = seed
        self.kv_dir = (
            Path(tempfile.mkdtemp(prefix="raftnode-sim-", dir=_kv_parent())) if kv_store else None
        )
        self.keyed_writes = 0
        self.retries: dict[str, int] = {"timeout": 0, "not leader": 0, "crash": 0, "refused": 0}
        self.sent_twice = 0
        self.dedup_from_snapshot = 0
        self.dedup_from_restart = 0
        self.kv_snapshots_installed = 0
        self.compactions = 0
        """Compactions on command that applied on the node that proposed them."""
        self.fast_leader_loss = fast_leader_loss
        self.flap_rate = flap_rate
        self.other_faults = other_faults
        self.concurrent_flaps = concurrent_flaps
        self.leader_crash_rate = leader_crash_rate
        self.leader_crashed_at: float | None = None
        self.failover_seconds: list[float] = []
        self.fast_prevotes = 0
        """Pre-vote requests marked ``leader_lost`` delivered (the fast path at work)."""
        self.rng = random.Random(seed)
        self.compact_rng = random.Random(f"compact-{seed}")
        """Its own stream, so compactions leave every other draw of a seed as it was."""
        self.size = size
        self.fault_ticks = fault_ticks
        self.liveness_ticks = liveness_ticks
        self.steps = 0
        self.acked_writes = 0
        self.served_reads = 0
        self.checker = SafetyChecker()
        self.loop = VirtualTimeLoop()
        self.loop.set_exception_handler(self._on_loop_exception)
        self.network = Network(self)
        self.events: deque[tuple[float, int, str | Message]] = deque(maxlen=400)
        self.violation: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.next_request_id = 0
        self.next_write_id = 0
        self.next_lease_id = 0
        self.leases_winding_down = False
        """Set once faults stop: lease clients send no more keep-alives."""
        rng = self.rng
        self.snapshot_every = rng.choice([4, 10, 30, 1000])
        self.compaction_retain = rng.choice([0, 2, 10])
        self.chunk_bytes = rng.choice([16, 64, 4096])
        if kv_store:
            # A store's snapshot is an SQLite file of a few 4 KiB pages at least.
            self.chunk_bytes *= 256
        self.max_inflight = rng.choice([1, 4, 64])
        self.max_batch = rng.choice([1, 3, 64])
        self.max_disk_latency = TICK * rng.choice([0.0, 0.02, 0.2])
        self.crash_mid_write = 0.0
        ids = list(range(1, size + 1))
        self.spare = size + 1
        bootstrap = RaftCore.bootstrap_entries(ids)
        self.nodes: dict[int, SimNode] = {}
        for node_id in ids:
            disk = MemoryDisk(HardState(term=1, commit=1), None, list(bootstrap))
            for entry in bootstrap:
                self.checker.on_persist(node_id, entry, 0)
            self.nodes[node_id] = SimNode(self, node_id, disk)
        self.nodes[self.spare] = SimNode(self, self.spare, MemoryDisk())
        self.metrics = {node_id: NodeMetrics() for node_id in self.nodes}
        for node in self.nodes.values():
            node.clock_rate = 1.0 + (rng.random() - 0.5) * 0.06

    def raft_config(self, node_id: int) -> RaftConfig:
        return RaftConfig(
            node_id=node_id,
            election_ticks=ELECTION_TICKS,
            heartbeat_ticks=1,
            max_inflight=self.max_inflight,
            max_batch_entries=self.max_batch,
            max_batch_bytes=1 << 20,
            snapshot_chunk_bytes=self.chunk_bytes,
            compaction_retain=self.compaction_retain,
            learner_catchup_entries=20,
            tick_seconds=TICK,
            lease_drift=0.1,
            fast_leader_loss=self.fast_leader_loss,
        )

    # --- plumbing -----------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def fail(self, problem: str, exc: BaseException | None = None) -> None:
        if self.violation is None:
            self.violation = str(exc) if isinstance(exc, SafetyViolation) else problem

    def _on_loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        self.fail(f"{context.get('message')}: {exc!r}", exc)

    def disk_latency(self) -> float:
        return self.rng.random() * self.max_disk_latency

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Where production runs the store's slow calls (sync, snapshots) in a worker thread:
        here after a simulated disk latency, on the loop, so that a seed replays exactly."""
        await asyncio.sleep(self.disk_latency())
        return fn(*args)

    def maybe_crash_mid_write(self, node_id: int, when: str) -> None:
        if self.crash_mid_write and self.rng.random() < self.crash_mid_write:
            self.trace(node_id, f"crash {when}")
            self.crash(node_id)
            raise asyncio.CancelledError

    # --- tracing ------------------------------------------------------------------------
    def trace(self, node: int, event: str) -> None:
        self.events.append((self.loop.time(), node, event))

    def format_trace(self) -> str:
        return "\n".join(f"  t={t:8.3f} n{n}: {describe(e)}" for t, n, e in self.events)

    # --- faults -------------------------------------------------------------------------
    def crash(self, node_id: int) -> None:
        leader = self.leader()
        if leader is not None and leader.id == node_id and self.leader_crashed_at is None:
            self.leader_crashed_at = self.loop.time()
        self.nodes[node_id].crash()
        self.trace(node_id, "crashed")

    def on_new_leader(self) -> None:
        """Count how long the cluster went without a leader after its leader crashed."""
        if self.leader_crashed_at is not None:
            self.failover_seconds.append(self.loop.time() - self.leader_crashed_at)
            self.leader_crashed_at = None

    @property
    def elections(self) -> int:
        """Elections won (terms that had a leader), the first one included."""
        return len(self.checker.leaders)

    def crash_leader_sometimes(self) -> None:
        leader = self.leader()
        if leader is not None and self.rng.random() < self.leader_crash_rate:
            self.crash(leader.id)
        if not self.other_faults:
            for node_id, node in self.nodes.items():
                if not node.alive and self.rng.random() < 0.2:
                    self.restart(node_id)

    def flap_link(self) -> None:
        """Flap a link between two live nodes, one of them the leader when there is one (a
        flapping link to the leader is the one that could cost an election)."""
        alive = [i for i, n in self.nodes.items() if n.alive]
        if len(alive) < 2 or (self.network.flapping and not self.concurrent_flaps):
            return
        leader = self.leader()
        a = leader.id if leader is not None else self.rng.choice(alive)
        b = self.rng.choice([i for i in alive if i != a])
        self.network.flap(a, b, self.rng.randint(1, 6))

    def restart(self, node_id: int) -> None:
        node = self.nodes[node_id]
        node.boot()
        self.trace(node_id, "restarted")

    def leader(self) -> SimNode | None:
        best = None
        for node in self.nodes.values():
            leads = node.alive and node.role is Role.LEADER
            if leads and (best is None or node.runtime.term > best.runtime.term):
                best = node
        return best

    def random_fault(self) -> None:
        rng = self.rng
        ids = sorted(self.nodes)
        roll = rng.random()
        if roll < 0.25:
            a, b = rng.sample(ids, 2)
            self.network.cut.add(frozenset((a, b)))
            self.trace(0, f"cut link n{a}-n{b}")
        elif roll < 0.35:
            victim = rng.choice(ids)
            for other in ids:
                if other != victim:
                    self.network.cut.add(frozenset((victim, other)))
            self.trace(0, f"isolated n{victim}")
        elif roll < 0.55:
            self.network.heal()
            self.trace(0, "healed the network")
        elif roll < 0.7:
            alive = [i for i in ids if self.nodes[i].alive]
            if alive:
                self.crash(rng.choice(alive))
        elif roll < 0.85:
            dead = [i for i in ids if not self.nodes[i].alive]
            if dead:
                self.restart(rng.choice(dead))
        elif roll < 0.92:
            leader = self.leader()
            if leader is not None:
                self.trace(leader.id, "asked to transfer leadership")
                self.spawn(leader.runtime.transfer_leadership(ELECTION_TICKS * TICK))
        else:
            self.change_membership()

    def change_membership(self) -> None:
        leader = self.leader()
        if leader is None or leader.runtime.core is None:
            return
        conf = leader.runtime.core.conf
        rng = self.rng
        non_members = [i for i in self.nodes if i not in conf.members()]
        choices: list[tuple[ConfChangeOp, int]] = []
        if non_members:
            choices.append((ConfChangeOp.ADD_LEARNER, rng.choice(non_members)))
        if conf.learners:
            choices.append((ConfChangeOp.ADD_VOTER, rng.choice(sorted(conf.learners))))
        if len(conf.voters) > 3:
            choices.append((ConfChangeOp.REMOVE, rng.choice(sorted(conf.voters))))
        if not choices:
            return
        op, node_id = rng.choice(choices)
        self.spawn(self._change(leader, op, node_id))

    async def _change(self, leader: SimNode, op: ConfChangeOp, node_id: int) -> None:
        self.trace(leader.id, f"proposing {op.name} n{node_id}")
        try:
            conf = await leader.runtime.change_membership(
                op, node_id, {"peer": f"sim:{node_id}"}, REQUEST_TIMEOUT
            )
        except (ConfChangeError, NodeError) as exc:
            self.trace(leader.id, f"{op.name} n{node_id} not done: {exc}")
            return
        self.trace(leader.id, f"{op.name} n{node_id} applied: voters {sorted(conf.voters)}")

    # --- clients ------------------------------------------------------------------------
    def client_write(self) -> None:
        alive = [n for n in self.nodes.values() if n.alive]
        if not alive:
            return
        node = self.rng.choice(alive)
        if node.role is not Role.LEADER:
            return
        self.next_write_id += 1
        key = f"k{self.rng.randrange(5)}"
        if self.kv_dir is not None and self.rng.random() < 0.2:
            self.client_txn(node, self.next_write_id)
            return
        if self.kv_dir is not None and self.compact_rng.random() < 0.03:
            self.spawn(self._compact(node))
        if self.kv_dir is not None and self.rng.random() < 0.5:
            self.spawn(self._keyed_write(node, key, self.next_write_id))
            return
        self.spawn(self._write(node, self.write_data(key, self.next_write_id), self.next_write_id))

    def client_txn(self, node: SimNode, write_id: int) -> None:
        """A transaction on the pair of keys only transactions write: when ``t0`` still has
        the ``mod_revision`` the leader shows now, write both (and read one back), else read
        both. Half carry an idempotency key and are retried like keyed writes."""
        assert isinstance(node.sm, SimKeyValueStore)
        seen = node.sm.store.get(TXN_KEYS[0])
        compare = Compare(TXN_KEYS[0], "mod_revision", "equal", seen.mod_revision if seen else 0)
        value = f"w{write_id}"
        success = (*(TxnOp("put", k, value) for k in TXN_KEYS), TxnOp("get", TXN_KEYS[0]))
        failure = tuple(TxnOp("get", k) for k in TXN_KEYS)
        txn = Txn((compare,), success, failure)
        if self.rng.random() < 0.5:
            self.spawn(
                self._keyed_write(
                    node,
                    TXN_KEYS[0],
                    write_id,
                    lambda rid, stamp: Txn(txn.compare, success, failure, rid, stamp).encode(),
                )
            )
            return
        self.spawn(self._txn(node, txn))

    async def _txn(self, node: SimNode, txn: Txn) -> None:
        """An unkeyed transaction, after the format upgrade that lets the store count versions
        (the service proposes it the same way before the first write of a new kind)."""
        assert isinstance(node.sm, SimKeyValueStore)
        try:
            if not node.sm.store.counts_versions:
                await node.runtime.propose(FormatUpgrade().encode(), REQUEST_TIMEOUT)
            result = await node.runtime.propose(txn.encode(), REQUEST_TIMEOUT)
        except NodeError:
            return
        if not isinstance(result, TxnResult):
            self.fail(f"node {node.id} answered a txn with {result!r}")
            return
        self.acked_writes += 1

    async def _compact(self, node: SimNode) -> None:
        """An operator's compaction to a revision inside the leader's history window (after
        the format upgrade that brings the window): every node must decide it the same way,
        which the checker sees in each index's outcome."""
        assert isinstance(node.sm, SimKeyValueStore)
        store = node.sm.store
        try:
            if store.history is None:
                await node.runtime.propose(FormatUpgrade(HISTORY_FORMAT).encode(), REQUEST_TIMEOUT)
            history = store.history
            if history is None or store.revision <= history.compact_revision:
                return
            rev = self.compact_rng.randint(history.compact_revision + 1, store.revision)
            self.trace(node.id, f"compacting the history up to revision {rev}")
            result = await node.runtime.propose(Compact(rev).encode(), REQUEST_TIMEOUT)
        except NodeError:
            return
        if not isinstance(result, CompactResult) or not result.ok:
            self.fail(f"node {node.id} answered a compaction to {rev} with {result!r}")
        elif result.compact_revision < rev:
            self.fail(f"node {node.id} compacted to {rev} but its window starts at {result}")
        else:
            self.compactions += 1

    def write_data(self, key: str, write_id: int) -> bytes:
        """The command of an unkeyed write: the store's own for ``kv_store`` runs."""
        if self.kv_dir is not None:
            return Command("put", key, f"w{write_id}").encode()
        return json.dumps({"k": key, "w": write_id}).encode()

    async def _write(self, node: SimNode, data: bytes, write_id: int) -> int | None:
        try:
            result = await node.runtime.propose(data, REQUEST_TIMEOUT)
        except NodeError:
            return None
        index = self._written_index(node, result, write_id)
        if index is None:
            return None
        self.checker.on_write_acked(index)
        self.acked_writes += 1
        return index

    def _written_index(self, node: SimNode, result: Any, write_id: int) -> int | None:
        """The index of the entry whose result answered write ``write_id``, when it is that
        write's own: ``SimStateMachine`` returns (index, write id); the store's result names
        the revision the write made, which the checker saw made by this write's value."""
        if isinstance(result, CommandResult):
            made = self.checker.exactly_once.by_revision.get(result.revision)
            if result.ok and made is not None and made[1] == f"w{write_id}":
                return made[0]
        elif isinstance(result, tuple) and result[1] == write_id:
            return int(result[0])
        self.fail(
            f"node {node.id} answered write {write_id} with another entry's result: {result!r}"
        )
        return None

    async def _keyed_write(
        self,
        node: SimNode,
        key: str,
        write_id: int,
        build: Callable[[str, float], bytes] | None = None,
    ) -> None:
        """A client's write with an idempotency key, sent until it is answered: again after a
        timeout, a refusal or a crash, to whichever node leads now (or any, to be redirected),
        as a client or a forwarding node would. A short timeout leaves the first entry in the
        log to commit after the retry's; sometimes the write is sent twice at once (both land in
        the log), or once more after its answer (a lost response). Each copy is re-stamped by
        the node it reaches, as the client API does."""
        rng = self.rng
        rid = f"req-{write_id}"
        self.keyed_writes += 1
        for attempt in range(1, KEYED_WRITE_ATTEMPTS + 1):
            runtime = node.runtime
            if build is not None:
                data = build(rid, node.clock())
            else:
                data = Command(
                    "put", key, f"w{write_id}", request_id=rid, stamp=node.clock()
                ).encode()
            timeout = TICK * rng.choice([2, 10, 20])
            if node.role is Role.LEADER and rng.random() < 0.15:
                self.sent_twice += 1
                self.spawn(self._send_keyed(node, rid, data, timeout))
            try:
                result = await runtime.propose(data, timeout)
            except NotLeader as e:
                self.retries["not leader"] += 1
                redirect = self.nodes.get(e.leader_id)
                if redirect is not None and redirect.alive:
                    node = redirect
                    continue
            except NodeError as e:
                if node.runtime is not runtime or not node.alive:
                    self.retries["crash"] += 1
                elif isinstance(e, OutcomeUnknown):
                    self.retries["timeout"] += 1
                else:
                    self.retries["refused"] += 1
            else:
                self._keyed_answer(rid, result)
                if rng.random() < 0.1:
                    self.spawn(self._send_keyed(node, rid, data, REQUEST_TIMEOUT))
                return
            await asyncio.sleep(TICK * rng.randint(1, 2 * attempt))
            alive = [n for n in self.nodes.values() if n.alive]
            if not alive:
                return
            leader = self.leader() if rng.random() < 0.5 else None
            node = leader or rng.choice(alive)

    async def _send_keyed(self, node: SimNode, rid: str, data: bytes, timeout: float) -> None:
        """One more copy of a keyed write, whose answer (if any) must be the first outcome."""
        try:
            result = await node.runtime.propose(data, timeout)
        except NodeError:
            return
        self._keyed_answer(rid, result)

    def duplicates_across_terms(self) -> int:
        """Committed retries whose first entry was appended in an earlier term: a leader took
        the key, lost its leadership, and the retry reached the next leader's log too."""
        committed = self.checker.committed
        count = 0
        for first, later in self.checker.exactly_once.duplicates:
            a, b = committed.get(first), committed.get(later)
            count += a is not None and b is not None and a.term != b.term
        return count

    def _keyed_answer(self, rid: str, result: Any) -> None:
        if not isinstance(result, ApplyResult):
            self.fail(f"keyed write {rid} answered with {result!r}")
            return
        self.checker.on_write_acked(self.checker.exactly_once.on_answer(rid, result))
        self.acked_writes += 1

    def client_read(self) -> None:
        alive = [n for n in self.nodes.values() if n.alive]
        if not alive:
            return
        node = self.rng.choice(alive)
        leaders = [n for n in alive if n.role is Role.LEADER]
        if len(leaders) > 1 and self.rng.random() < 0.8:
            # Two nodes think they lead: the stale one is where a read could go wrong.
            node = min(leaders, key=lambda n: n.runtime.term)
        kind = "lease" if self.rng.random() < 0.5 else "linearizable"
        self.spawn(self._read(node, kind, self.checker.max_acked_write_index))

    async def _read(self, node: SimNode, kind: str, started_after_index: int) -> None:
        runtime = node.runtime
        try:
            await runtime.read_barrier(kind, REQUEST_TIMEOUT)
        except NodeError:
            return
        if node.runtime is not runtime or not node.alive:
            return  # crashed before answering
        self.checker.on_read(node.id, started_after_index, node.sm.last_write, kind)
        self.served_reads += 1

    # --- the run ------------------------------------------------------------------------
    def check_all(self) -> None:
        for node in self.nodes.values():
            node.check()
        if self.violation is not None:
            raise SafetyViolation(self.violation)

    def run(self) -> None:
        try:
            self.loop.run_until_complete(self._run())
        except SafetyViolation as exc:
            raise SafetyViolation(self.report(str(exc))) from None
        except Exception as exc:
            raise SafetyViolation(self.report(f"{type(exc).__name__}: {exc}")) from exc
        finally:
            self._shut_down()

    async def _run(self) -> None:
        rng = self.rng
        self.network.drop_rate = rng.choice([0.0, 0.02, 0.1, 0.25])
        self.network.dup_rate = rng.choice([0.0, 0.05])
        self.network.max_delay = rng.choice([0.1, 0.5, 2.0])
        self.crash_mid_write = rng.choice([0.0, 0.002]) if self.other_faults else 0.0
        fault_rate = rng.choice([0.02, 0.08, 0.2])
        flap_rate = rng.choice([0.0, 0.0, 0.02, 0.1]) if self.flap_rate is None else self.flap_rate
        for node_id in range(1, self.size + 1):
            self.nodes[node_id].boot()
        self.nodes[self.spare].boot()
        for _ in range(self.fault_ticks):
            await asyncio.sleep(TICK)
            self.check_all()
            for _ in range(rng.randrange(3)):
                self.client_write()
            for _ in range(rng.randrange(4)):
                self.client_read()
            if self.kv_dir is not None and rng.random() < 0.05:
                self.client_lease()
            if rng.random() < fault_rate and self.other_faults:
                self.random_fault()
            if flap_rate and rng.random() < flap_rate:
                self.flap_link()
            if self.leader_crash_rate:
                self.crash_leader_sometimes()
        await self.check_liveness()
        await self.check_leases_end()

    async def check_liveness(self) -> None:
        """Heal everything; a leader must emerge and new writes commit everywhere in time."""
        self.network.heal()
        self.network.drop_rate = 0.0
        self.network.dup_rate = 0.0
        self.network.max_delay = 0.3
        self.crash_mid_write = 0.0
        for node_id, node in self.nodes.items():
            if not node.alive:
                self.restart(node_id)
        self.trace(0, "faults stopped: liveness phase")
        deadline = self.loop.time() + self.liveness_ticks * TICK
        acked: list[int] = []
        in_flight: asyncio.Task[int | None] | None = None
        while self.loop.time() < deadline:
            await asyncio.sleep(TICK)
            self.check_all()
            if in_flight is not None and in_flight.done():
                index = in_flight.result()
                if index is not None:
                    acked.append(index)
                in_flight = None
            leader = self.leader()
            if leader is None:
                continue
            if len(acked) < 3 and in_flight is None:
                self.next_write_id += 1
                data = self.write_data("final", self.next_write_id)
                in_flight = self.loop.create_task(self._write(leader, data, self.next_write_id))
            if len(acked) == 3 and self.converged(leader, acked[-1]):
                return
        state = ", ".join(
            f"n{n.id}:{n.role.value} t{n.runtime.term} commit{n.runtime.commit_index} "
            f"applied{n.runtime.applied_index}"
            for n in self.nodes.values()
        )
        raise SafetyViolation(
            f"liveness: no leader committed new proposals on all members within "
            f"{self.liveness_ticks} ticks after faults stopped ({state})"
        )

    async def check_leases_end(self) -> None:
        """Once the cluster is healthy and the clients stop their keep-alives, every lease
        ends: within a request (one in flight may still renew it) and its TTL, plus a sweep
        and a commit."""
        if self.kv_dir is None:
            return
        self.leases_winding_down = True
        window = REQUEST_TIMEOUT + 2 * max(LEASE_TTLS)
        deadline = self.loop.time() + window
        left: list[int] = []
        while self.loop.time() < deadline:
            leader = self.leader()
            if leader is not None and isinstance(leader.sm, SimKeyValueStore):
                leases = leader.sm.store.leases
                left = sorted(leases.granted()) if leases is not None else []
                if not left:
                    return
            await asyncio.sleep(TICK)
        raise SafetyViolation(
            f"liveness: leases {left} nobody keeps alive were not revoked within {window} s "
            "of a healthy cluster"
        )

    def client_lease(self) -> None:
        """A client grants a lease at the leader, attaches a key to it, keeps it alive a few
        times at whichever node leads, then stops (the lease must then end by itself)."""
        leader = self.leader()
        if leader is None or leader.lessor is None:
            return
        self.next_lease_id += 1
        lease = self.next_lease_id
        rng = self.rng
        ttl = rng.choice(LEASE_TTLS)
        pauses = [rng.uniform(0.3, 0.9) * ttl for _ in range(rng.randrange(6))]
        self.spawn(self._lease_client(leader.lessor, lease, ttl, pauses))

    async def _lease_client(
        self, lessor: Lessor, lease: int, ttl: int, pauses: list[float]
    ) -> None:
        leases = self.checker.leases
        try:
            sent = self.loop.time()
            await lessor.grant(ttl, lease, sent + REQUEST_TIMEOUT)
            leases.on_ack(lease, sent, ttl)
            put = Command("put", f"lease{lease}", "held", lease=lease)
            await lessor.service.write(put, self.loop.time() + REQUEST_TIMEOUT)
            for pause in pauses:
                await asyncio.sleep(pause)
                if self.leases_winding_down:
                    return
                leader = self.leader()
                if leader is None or leader.lessor is None:
                    continue
                sent = self.loop.time()
                with contextlib.suppress(NodeError):
                    await leader.lessor.keep_alive(lease, sent + REQUEST_TIMEOUT)
                    leases.on_ack(lease, sent, ttl)
        except (NodeError, LeaseNotFound, LeaseRefused, UpgradeInProgress):
            pass

    def converged(self, leader: SimNode, index: int) -> bool:
        core = leader.runtime.core
        assert core is not None
        members = [self.nodes[m] for m in core.conf.members() if m in self.nodes]
        if not all(n.runtime.applied_index >= index for n in members):
            return False
        for node in members:
            if node.sm.last_write == leader.sm.last_write and node.sm.state() != leader.sm.state():
                raise SafetyViolation(
                    f"state machines differ at write {leader.sm.last_write}: n{leader.id} has "
                    f"{leader.sm.state()}, n{node.id} has {node.sm.state()}"
                )
        return True

    def _shut_down(self) -> None:
        for node in self.nodes.values():
            if node.alive:
                node.crash()
        tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.close()
        if self.kv_dir is not None:
            shutil.rmtree(self.kv_dir, ignore_errors=True)

    def report(self, problem: str) -> str:
        return (
            f"simulation seed {self.seed} (size {self.size}) failed at "
            f"t={self.loop.time():.3f}: {problem}\nreproduce: RAFTNODE_SIM_SEED={self.seed} "
            f"RAFTNODE_SIM_SIZE={self.size} python -m tests.sim.runner\n"
            f"last events:\n{self.format_trace()}"
        )


def describe(event: str | Message) -> str:
    if isinstance(event, str):
        return event
    m = event
    parts = [f"<- {m.type.name} from n{m.frm} term={m.term}"]
    if m.index or m.log_term:
        parts.append(f"index={m.index} log_term={m.log_term}")
    if m.entries:
        parts.append(f"entries={m.entries[0].index}..{m.entries[-1].index}")
    if m.commit:
        parts.append(f"commit={m.commit}")
    if m.reject:
        parts.append(f"REJECT hint={m.reject_hint}")
    if m.context:
        parts.append(f"ctx={m.context}")
    if m.snapshot_meta is not None:
        parts.append(f"snap@{m.snapshot_meta.index} off={m.offset} done={m.done}")
    if m.force:
        parts.append("force")
    return " ".join(parts)


def _kv_parent() -> str | None:
    """Where the stores' files go: memory (``/dev/shm``) when there is one, as nothing in them
    must outlive the run and the store fsyncs."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() else None
