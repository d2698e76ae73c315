"""A deterministic Raft cluster simulation: simulated time, disks, network, clients and faults.

Everything random comes from one ``random.Random(seed)``, so a seed replays exactly. The network
drops, delays, reorders, duplicates and partitions messages; nodes crash (losing everything not
persisted) and restart from their simulated disk; clients write and read (linearizable and lease)
at random nodes; the leader is asked to transfer leadership and to change membership. After the
fault phase everything heals and the cluster must elect a leader and commit new proposals within
a bounded simulated time. ``SafetyChecker`` checks Raft's properties after every step.
"""

from __future__ import annotations

import heapq
import json
import random
from collections import deque
from dataclasses import dataclass, field

from raftnode.raft import (
    ConfChangeError,
    ConfChangeOp,
    Entry,
    EntryType,
    HardState,
    Message,
    NotLeaderError,
    RaftConfig,
    RaftCore,
    Ready,
    Role,
    Snapshot,
)
from tests.sim.checker import SafetyChecker, SafetyViolation

ELECTION_TICKS = 10


@dataclass
class SimDisk:
    """What survives a crash: exactly what the node persisted from its Readys."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    def last_term_before(self, index: int) -> int:
        if self.entries and self.entries[0].index <= index - 1:
            return self.entries[index - 1 - self.entries[0].index].term
        if self.snapshot is not None and self.snapshot.meta.index == index - 1:
            return self.snapshot.meta.term
        return 0

    def append(self, entries: list[Entry]) -> None:
        first = entries[0].index
        if self.entries:
            pos = first - self.entries[0].index
            if pos < 0:
                raise AssertionError(f"append at {first} before the disk's first entry")
            if pos > len(self.entries):
                raise AssertionError(f"gap on disk: {first} after {self.entries[-1].index}")
            del self.entries[pos:]
        self.entries.extend(entries)

    def install(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.entries = []

    def compact(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        keep_from = snapshot.meta.index + 1
        if self.entries and self.entries[0].index < keep_from:
            del self.entries[: keep_from - self.entries[0].index]


@dataclass
class PendingWrite:
    write_id: int


@dataclass
class PendingRead:
    started_after_index: int
    kind: str
    index: int = -1


class SimNode:
    def __init__(self, sim: Simulation, node_id: int, disk: SimDisk):
        self.sim = sim
        self.id = node_id
        self.disk = disk
        self.alive = True
        self.clock_rate = 1.0
        self.core: RaftCore
        self.kv: dict[str, int] = {}
        self.applied = 0
        self.writes: dict[int, PendingWrite] = {}
        self.reads: dict[int, PendingRead] = {}
        self.was_leader_term = 0
        self.checked_commit = 0
        self.boot()

    def boot(self) -> None:
        snapshot = self.disk.snapshot
        self.core = RaftCore(
            self.sim.raft_config(self.id),
            rng=random.Random(self.sim.rng.random()),
            hard_state=self.disk.hard_state,
            snapshot=snapshot,
            entries=list(self.disk.entries),
        )
        if snapshot is not None:
            state = json.loads(snapshot.data)
            self.kv = state["kv"]
            self.applied = snapshot.meta.index
        else:
            self.kv = {}
            self.applied = 0
        self.checked_commit = self.applied
        self.writes = {}
        self.reads = {}
        self.was_leader_term = 0

    def now(self) -> float:
        return self.sim.now * self.clock_rate

    # --- driving the core ---------------------------------------------------------------
    def drain(self) -> None:
        while self.alive and self.core.has_ready():
            rd = self.core.ready()
            for m in rd.early_messages:
                self.sim.network.send(m)
            if self.sim.rng.random() < self.sim.crash_mid_ready:
                self.sim.trace(self.id, "crash after sending appends, before persisting them")
                self.sim.crash(self.id)
                return
            self.persist(rd)
            if self.sim.rng.random() < self.sim.crash_mid_ready:
                self.sim.trace(self.id, "crash after persisting, before sending")
                self.sim.crash(self.id)
                return
            for m in rd.messages:
                self.sim.network.send(m)
            self.apply(rd)
            self.core.advance(rd)
            self.after_advance()
        if self.alive:
            self.check_role()

    def persist(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self.disk.install(rd.snapshot)
        if rd.entries:
            prev_term = self.disk.last_term_before(rd.entries[0].index)
            for entry in rd.entries:
                self.sim.checker.on_persist(self.id, entry, prev_term)
                prev_term = entry.term
            self.disk.append(rd.entries)
        if rd.hard_state is not None:
            self.disk.hard_state = rd.hard_state

    def apply(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            state = json.loads(rd.snapshot.data)
            self.kv = state["kv"]
            self.applied = rd.snapshot.meta.index
            self.sim.trace(self.id, f"installed snapshot at {self.applied}")
        for entry in rd.committed_entries:
            self.sim.checker.on_apply(self.id, entry, self.applied)
            self.applied = entry.index
            if entry.type is EntryType.NORMAL and entry.data:
                cmd = json.loads(entry.data)
                self.kv[cmd["k"]] = entry.index
                pending = self.writes.pop(entry.index, None)
                if pending is not None and pending.write_id == cmd["w"]:
                    self.sim.checker.on_write_acked(entry.index)
                    self.sim.acked_writes += 1
            else:
                self.writes.pop(entry.index, None)
        for rs in rd.read_states:
            read = self.reads.get(rs.request_id)
            if read is None:
                continue
            if rs.error is not None:
                del self.reads[rs.request_id]
            else:
                read.index = rs.index

    def after_advance(self) -> None:
        for request_id, read in list(self.reads.items()):
            if read.index >= 0 and self.applied >= read.index:
                self.sim.checker.on_read(self.id, read.started_after_index, self.applied, read.kind)
                self.sim.served_reads += 1
                del self.reads[request_id]
        if self.applied - self.core.log.offset >= self.sim.snapshot_every and self.applied > (
            self.core.snapshot.meta.index if self.core.snapshot else 0
        ):
            meta = self.core.snapshot_meta(self.applied)
            data = json.dumps({"kv": self.kv}, sort_keys=True).encode()
            snapshot = Snapshot(meta, data)
            self.core.compact(snapshot)
            self.disk.compact(snapshot)

    def check_role(self) -> None:
        core = self.core
        if core.commit_index > self.checked_commit:
            start = max(self.checked_commit + 1, core.log.first_index())
            for index in range(start, core.commit_index + 1):
                self.sim.checker.on_commit(self.id, core.log.entry(index))
            self.checked_commit = core.commit_index
        if core.role is Role.LEADER and self.was_leader_term != core.term:
            self.was_leader_term = core.term
            checker = self.sim.checker
            lo = max(core.log.first_index(), 1)
            log_terms = {i: core.log.term(i) for i in range(lo, checker.max_committed + 1)}
            checker.on_leader(self.id, core.term, log_terms)
            self.sim.trace(self.id, f"became leader of term {core.term}")


class Network:
    """Messages in flight, delivered in order of a random delay; faults applied on send."""

    def __init__(self, sim: Simulation):
        self.sim = sim
        self.queue: list[tuple[float, int, Message]] = []
        self.seq = 0
        self.drop_rate = 0.0
        self.dup_rate = 0.0
        self.max_delay = 0.3
        self.cut: set[frozenset[int]] = set()

    def blocked(self, a: int, b: int) -> bool:
        return frozenset((a, b)) in self.cut

    def send(self, m: Message) -> None:
        rng = self.sim.rng
        if self.blocked(m.frm, m.to) or rng.random() < self.drop_rate:
            return
        copies = 2 if rng.random() < self.dup_rate else 1
        for _ in range(copies):
            self.seq += 1
            delay = 0.01 + rng.random() * self.max_delay
            heapq.heappush(self.queue, (self.sim.now + delay, self.seq, m))

    def deliver_until(self, until: float) -> None:
        while self.queue and self.queue[0][0] < until:
            at, _, m = heapq.heappop(self.queue)
            self.sim.now = at
            node = self.sim.nodes.get(m.to)
            if node is None or not node.alive or self.blocked(m.frm, m.to):
                continue
            self.sim.steps += 1
            self.sim._trace.append((at, m.to, m))
            node.core.step(m, node.now())
            node.drain()

    def heal(self) -> None:
        self.cut.clear()


class Simulation:
    def __init__(self, seed: int, size: int = 3, fault_ticks: int = 250, liveness_ticks: int = 120):
        self.seed = seed
        self.rng = random.Random(seed)
        self.size = size
        self.fault_ticks = fault_ticks
        self.liveness_ticks = liveness_ticks
        self.now = 0.0
        self.steps = 0
        self.acked_writes = 0
        self.served_reads = 0
        self.checker = SafetyChecker()
        self.network = Network(self)
        self._trace: deque[tuple[float, int, str | Message]] = deque(maxlen=400)
        self.next_request_id = 0
        self.next_write_id = 0
        rng = self.rng
        self.snapshot_every = rng.choice([4, 10, 30, 1000])
        self.compaction_retain = rng.choice([0, 2, 10])
        self.chunk_bytes = rng.choice([16, 64, 4096])
        self.max_inflight = rng.choice([1, 4, 64])
        self.max_batch = rng.choice([1, 3, 64])
        self.crash_mid_ready = 0.0
        ids = list(range(1, size + 1))
        self.spare = size + 1
        bootstrap = RaftCore.bootstrap_entries(ids)
        self.nodes: dict[int, SimNode] = {}
        for node_id in ids:
            disk = SimDisk(HardState(term=1, commit=1), None, list(bootstrap))
            for entry in bootstrap:
                self.checker.on_persist(node_id, entry, 0)
            self.nodes[node_id] = SimNode(self, node_id, disk)
        self.nodes[self.spare] = SimNode(self, self.spare, SimDisk())
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
            tick_seconds=1.0,
            lease_drift=0.1,
        )

    # --- tracing ------------------------------------------------------------------------
    def trace(self, node: int, event: str) -> None:
        self._trace.append((self.now, node, event))

    def format_trace(self) -> str:
        return "\n".join(f"  t={t:8.3f} n{n}: {describe(e)}" for t, n, e in self._trace)

    # --- faults -------------------------------------------------------------------------
    def crash(self, node_id: int) -> None:
        node = self.nodes[node_id]
        node.alive = False
        self.trace(node_id, "crashed")

    def restart(self, node_id: int) -> None:
        node = self.nodes[node_id]
        node.alive = True
        node.boot()
        self.trace(node_id, f"restarted (term {node.core.term}, last {node.core.last_index})")

    def leader(self) -> SimNode | None:
        best = None
        for node in self.nodes.values():
            is_leader = node.alive and node.core.role is Role.LEADER
            if is_leader and (best is None or node.core.term > best.core.term):
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
                try:
                    target = leader.core.transfer_leadership()
                    self.trace(leader.id, f"transfer leadership to n{target}")
                except (NotLeaderError, ValueError):
                    pass
                leader.drain()
        else:
            self.change_membership()

    def change_membership(self) -> None:
        leader = self.leader()
        if leader is None:
            return
        conf = leader.core.conf
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
        try:
            leader.core.propose_conf_change(op, node_id, {"addr": f"n{node_id}"})
            self.trace(leader.id, f"proposed {op.name} n{node_id}")
        except (ConfChangeError, NotLeaderError) as exc:
            self.trace(leader.id, f"conf change {op.name} n{node_id} refused: {exc}")
        leader.drain()

    # --- clients ------------------------------------------------------------------------
    def client_write(self) -> None:
        alive = [n for n in self.nodes.values() if n.alive]
        if not alive:
            return
        node = self.rng.choice(alive)
        if node.core.role is not Role.LEADER:
            return
        self.next_write_id += 1
        key = f"k{self.rng.randrange(5)}"
        data = json.dumps({"k": key, "w": self.next_write_id}).encode()
        try:
            index = node.core.propose(data)
        except NotLeaderError:
            return
        node.writes[index] = PendingWrite(self.next_write_id)
        node.drain()

    def client_read(self) -> None:
        alive = [n for n in self.nodes.values() if n.alive]
        if not alive:
            return
        node = self.rng.choice(alive)
        leaders = [n for n in alive if n.core.role is Role.LEADER]
        if len(leaders) > 1 and self.rng.random() < 0.8:
            # Two nodes think they lead: the stale one is where a read could go wrong.
            node = min(leaders, key=lambda n: n.core.term)
        lease = self.rng.random() < 0.5
        self.next_request_id += 1
        rid = self.next_request_id
        node.reads[rid] = PendingRead(
            self.checker.max_acked_write_index, "lease" if lease else "linearizable"
        )
        node.core.read_index(rid, node.now(), lease=lease)
        node.drain()

    # --- the run ------------------------------------------------------------------------
    def tick_all(self) -> None:
        for node in list(self.nodes.values()):
            if node.alive:
                self.steps += 1
                node.core.tick(node.now())
                node.drain()

    def run(self) -> None:
        rng = self.rng
        self.network.drop_rate = rng.choice([0.0, 0.02, 0.1, 0.25])
        self.network.dup_rate = rng.choice([0.0, 0.05])
        self.network.max_delay = rng.choice([0.1, 0.5, 2.0])
        self.crash_mid_ready = rng.choice([0.0, 0.002])
        fault_rate = rng.choice([0.02, 0.08, 0.2])
        try:
            for tick in range(self.fault_ticks):
                self.network.deliver_until(float(tick))
                self.now = float(tick)
                self.tick_all()
                for _ in range(rng.randrange(3)):
                    self.client_write()
                for _ in range(rng.randrange(4)):
                    self.client_read()
                if rng.random() < fault_rate:
                    self.random_fault()
            self.check_liveness()
        except SafetyViolation as exc:
            raise SafetyViolation(self.report(str(exc))) from None
        except Exception as exc:
            raise SafetyViolation(self.report(f"{type(exc).__name__}: {exc}")) from exc

    def check_liveness(self) -> None:
        """Heal everything; a leader must emerge and new writes commit everywhere in time."""
        self.network.heal()
        self.network.drop_rate = 0.0
        self.network.dup_rate = 0.0
        self.network.max_delay = 0.3
        self.crash_mid_ready = 0.0
        for node_id, node in self.nodes.items():
            if not node.alive:
                self.restart(node_id)
        self.trace(0, "faults stopped: liveness phase")
        start = self.now
        deadline = start + self.liveness_ticks
        proposed: list[int] = []
        leader: SimNode | None = None
        tick = int(self.now) + 1
        while self.now < deadline:
            self.network.deliver_until(float(tick))
            self.now = float(tick)
            self.tick_all()
            tick += 1
            leader = self.leader()
            if leader is None:
                continue
            if len(proposed) < 3:
                try:
                    data = json.dumps({"k": "final", "w": -len(proposed) - 1}).encode()
                    proposed.append(leader.core.propose(data))
                    leader.drain()
                except NotLeaderError:
                    pass
            if len(proposed) == 3 and self.converged(leader, proposed[-1]):
                return
        state = ", ".join(
            f"n{n.id}:{n.core.role.value} t{n.core.term} last{n.core.last_index} "
            f"commit{n.core.commit_index} applied{n.applied}"
            for n in self.nodes.values()
        )
        raise SafetyViolation(
            f"liveness: no leader committed new proposals on all members within "
            f"{self.liveness_ticks} ticks after faults stopped ({state})"
        )

    def converged(self, leader: SimNode, index: int) -> bool:
        members = leader.core.conf.members()
        return all(self.nodes[m].applied >= index for m in members if m in self.nodes)

    def report(self, problem: str) -> str:
        return (
            f"simulation seed {self.seed} (size {self.size}) failed at t={self.now:.3f}: "
            f"{problem}\nreproduce: RAFTNODE_SIM_SEED={self.seed} RAFTNODE_SIM_SIZE={self.size} "
            f"python -m tests.sim.runner\nlast events:\n{self.format_trace()}"
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
