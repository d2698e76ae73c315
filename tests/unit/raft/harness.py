"""A tiny synchronous network of RaftCores for scenario tests: messages move only when told."""

from __future__ import annotations

import random
from collections.abc import Callable

from raftnode.raft import (
    HardState,
    Message,
    RaftConfig,
    RaftCore,
    ReadState,
    Role,
    Snapshot,
)


class Net:
    def __init__(self, size: int = 3, **config: object):
        self.ids = list(range(1, size + 1))
        self.config = config
        bootstrap = RaftCore.bootstrap_entries(self.ids)
        self.cores: dict[int, RaftCore] = {}
        self.read_states: dict[int, list[ReadState]] = {i: [] for i in self.ids}
        self.applied: dict[int, list[bytes]] = {i: [] for i in self.ids}
        self.snapshots: dict[int, Snapshot] = {}
        self.sent: list[Message] = []
        self.now = 0.0
        for node_id in self.ids:
            self.cores[node_id] = self.make(node_id, HardState(term=1, commit=1), bootstrap)
        self.pending: list[Message] = []

    def make(self, node_id: int, hard_state: HardState, entries: list, **kw: object) -> RaftCore:
        cfg = RaftConfig(node_id=node_id, tick_seconds=1.0, **{**self.config, **kw})  # type: ignore[arg-type]
        core = RaftCore(cfg, rng=random.Random(node_id), hard_state=hard_state, entries=entries)
        core._ticks_since_boot = cfg.election_ticks  # tests start past the boot quiet period
        return core

    def add(self, node_id: int) -> RaftCore:
        """A brand-new node (empty log) that will join through a membership change."""
        core = self.make(node_id, HardState(), [])
        self.cores[node_id] = core
        self.read_states[node_id] = []
        self.applied[node_id] = []
        return core

    def collect(self, node_id: int) -> None:
        core = self.cores[node_id]
        while core.has_ready():
            rd = core.ready()
            if rd.snapshot is not None:
                self.snapshots[node_id] = rd.snapshot
            self.applied[node_id].extend(e.data for e in rd.committed_entries)
            self.read_states[node_id].extend(rd.read_states)
            self.pending.extend(rd.early_messages + rd.messages)
            self.sent.extend(rd.early_messages + rd.messages)
            core.advance(rd)

    def deliver(
        self, drop: Callable[[Message], bool] = lambda m: False, max_messages: int = 100_000
    ) -> int:
        """Deliver messages until none are left; returns how many were delivered."""
        delivered = 0
        for node_id in list(self.cores):
            self.collect(node_id)
        while self.pending:
            batch, self.pending = self.pending, []
            for m in batch:
                if m.to not in self.cores or drop(m):
                    continue
                delivered += 1
                if delivered > max_messages:
                    raise AssertionError("message storm: the cluster did not settle")
                self.cores[m.to].step(m, self.now)
                self.collect(m.to)
        return delivered

    def tick(
        self, node_id: int, times: int = 1, drop: Callable[[Message], bool] = lambda m: False
    ) -> None:
        for _ in range(times):
            self.now += 1.0
            self.cores[node_id].tick(self.now)
            self.deliver(drop)

    def tick_all(self, times: int = 1, drop: Callable[[Message], bool] = lambda m: False) -> None:
        for _ in range(times):
            self.now += 1.0
            for core in self.cores.values():
                core.tick(self.now)
            self.deliver(drop)

    def elect(self, node_id: int) -> RaftCore:
        core = self.cores[node_id]
        for _ in range(4 * core.cfg.election_ticks):
            self.tick(node_id)
            if core.role is Role.LEADER:
                return core
        raise AssertionError(f"node {node_id} did not become leader")

    def leaders(self) -> list[int]:
        return [i for i, c in self.cores.items() if c.role is Role.LEADER]


def isolate(node_id: int) -> Callable[[Message], bool]:
    return lambda m: m.to == node_id or m.frm == node_id


def cut(a: int, b: int) -> Callable[[Message], bool]:
    return lambda m: {m.to, m.frm} == {a, b}
