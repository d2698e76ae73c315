"""The simulation's watchers around what a ``RaftNode`` touches outside itself: disk writes
(``raftnode.testing``'s in-memory log store, with random latency and crashes mid-write) and the
application's state machine. Each one reports to the ``SafetyChecker`` what it sees."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raftnode.kv.commands import ApplyResult, LeaseRevoke, Txn, TxnResult, decode_entry
from raftnode.kv.store import KeyValueStore, SnapshotInfo
from raftnode.raft import Entry
from raftnode.testing.memory_log import MemoryDisk, MemoryLogStore
from tests.sim.checker import TXN_KEYS, PairState

if TYPE_CHECKING:
    from tests.sim.cluster import SimNode, Simulation


class SimLogStore(MemoryLogStore):
    """A ``MemoryLogStore`` whose writes take a random simulated time, reported to the checker;
    the node may crash while a write is in flight (nothing written) or right after it (written,
    nothing sent)."""

    def __init__(self, sim: Simulation, node_id: int, disk: MemoryDisk) -> None:
        super().__init__(disk, latency=sim.disk_latency)
        self.sim = sim
        self.node_id = node_id

    async def _before_write(self) -> None:
        await super()._before_write()
        self.sim.maybe_crash_mid_write(self.node_id, "before its write became durable")

    def _persisting(self, entry: Entry, prev_term: int) -> None:
        self.sim.checker.on_persist(self.node_id, entry, prev_term)

    def _after_persist(self) -> None:
        self.sim.maybe_crash_mid_write(self.node_id, "after persisting, before sending")


class SimStateMachine:
    """A key-value map whose value is the log index that last wrote the key.

    ``apply`` returns ``(index, write id)`` so the client that proposed the write can check the
    runtime resolved its proposal with its own entry's result. ``last_write`` is the index of the
    last write applied, the state machine's own record for the checker (independent of the
    runtime's bookkeeping).
    """

    def __init__(self, sim: Simulation, node: SimNode) -> None:
        self.sim = sim
        self.node = node
        self.kv: dict[str, int] = {}
        self.last_write = 0

    def apply(self, index: int, data: bytes) -> Any:
        cmd = json.loads(data)
        self.node.check_commits()
        self.sim.checker.on_state_machine_apply(self.node.id, index, data, self.last_write)
        self.kv[cmd["k"]] = index
        self.last_write = index
        return index, cmd["w"]

    def snapshot(self) -> bytes:
        return json.dumps({"kv": self.kv, "last": self.last_write}, sort_keys=True).encode()

    def restore(self, data: bytes) -> None:
        state: dict[str, Any] = json.loads(data) if data else {"kv": {}, "last": 0}
        self.kv = state["kv"]
        self.last_write = state["last"]

    def state(self) -> dict[str, int]:
        return self.kv

    def close(self) -> None:
        return None


class SimKeyValueStore:
    """The production key-value store (``raftnode.kv.store.KeyValueStore``, SQLite in a file of
    the node's own) as the node's ``DurableStateMachine``, watched from outside.

    Everything goes to the real store, so the runtime drives it through ``DurableKeeper`` as in
    production: apply and commit per batch, log compaction to the store's durable index,
    snapshots materialized to files and installed with ``stage_restore``/``finish_restore``. The
    store's file outlives a crash (a crash closes it, dropping any uncommitted batch).

    Each apply is reported to the checker with whether it took effect (the store's revision
    moved), which is how the checker tells a double apply without asking the store's own dedup.
    ``last_write`` is the index of the last write applied (the store's applied index after a
    start or a snapshot), as ``SimStateMachine`` keeps it. ``dedup_from_snapshot`` and
    ``dedup_from_restart`` count retries absorbed here whose first entry this node never applied
    itself: their outcome reached it in a snapshot, or in the store it reopened after a crash.
    """

    def __init__(self, sim: Simulation, node: SimNode, path: Path) -> None:
        self.sim = sim
        self.node = node
        self.store = KeyValueStore.open(path)
        self.last_write = self.store.applied_index
        self.applied_keys: set[str] = set()
        self.keys_came_from = "restart"

    @property
    def applied_index(self) -> int:
        return self.store.applied_index

    def apply(self, index: int, data: bytes) -> ApplyResult:
        self.node.check_commits()
        checker = self.sim.checker
        checker.on_state_machine_apply(self.node.id, index, data, self.last_write)
        revision = self.store.revision
        result = self.store.apply(index, data)
        self.last_write = index
        cmd = decode_entry(data)
        checker.exactly_once.on_apply(
            self.node.id, index, cmd, result, self.store.revision != revision
        )
        if isinstance(cmd, LeaseRevoke) and cmd.expired and result.ok:
            checker.leases.on_expire(self.node.id, cmd.lease, self.sim.loop.time())
        if isinstance(cmd, Txn):
            assert isinstance(result, TxnResult), result
            checker.txns.on_txn(self.node.id, index, cmd, result, revision, self.store.revision)
        checker.txns.check_pair(self.node.id, index, self.txn_pair())
        rid = cmd.request_id
        if rid is not None:
            if result.replayed and rid not in self.applied_keys:
                if self.keys_came_from == "snapshot":
                    self.sim.dedup_from_snapshot += 1
                else:
                    self.sim.dedup_from_restart += 1
            self.applied_keys.add(rid)
        return result

    def commit(self, applied_index: int | None = None) -> None:
        self.store.commit(applied_index)

    def sync(self) -> int:
        return self.store.sync()

    def snapshot_to(self, dest: Path) -> SnapshotInfo:
        return self.store.snapshot_to(dest)

    def stage_restore(self, src: Path) -> SnapshotInfo:
        return self.store.stage_restore(src)

    def txn_pair(self) -> PairState:
        records = [self.store.get(k) for k in TXN_KEYS]
        return tuple(None if r is None else (r.value, r.revisions) for r in records)

    def finish_restore(self) -> None:
        self.store.finish_restore()
        self.sim.checker.txns.check_pair(self.node.id, self.store.applied_index, self.txn_pair())
        self.last_write = self.store.applied_index
        self.applied_keys.clear()
        self.keys_came_from = "snapshot"
        self.sim.kv_snapshots_installed += 1

    def state(
        self,
    ) -> tuple[int, list[tuple[str, str, int, int, int | None]], list[tuple[int, int]]]:
        """Revision, every key with its value and revisions, and the leases (to compare
        nodes)."""
        leases = self.store.leases
        return (
            self.store.revision,
            [
                (k, r.value, r.create_revision, r.mod_revision, r.version)
                for k, r in self.store.list()
            ],
            sorted(leases.granted().items()) if leases is not None else [],
        )

    def close(self) -> None:
        self.store.close()
