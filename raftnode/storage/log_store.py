"""The runtime's view of durable Raft state (hashicorp/raft's ``LogStore`` + ``StableStore``).

``RaftNode`` persists through this protocol only, so the simulation can run the very loop that
production runs on an in-memory store with simulated disk latency and crashes. Every method
returns once what it was given is durable; a failure raises and the node stops serving.
``DiskLogStore`` is the production store: ``RaftStorage`` (WAL segments, hard state, snapshot
files) driven from one worker thread, so fsyncs never block the event loop and run in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from raftnode.raft.types import Entry, HardState, Snapshot
from raftnode.storage.cluster_identity import read_cluster_id, write_cluster_id
from raftnode.storage.raft_storage import RaftStorage
from raftnode.storage.serial_worker import SerialWorker
from raftnode.transport.auth import NO_CLUSTER


@dataclass(frozen=True, slots=True)
class PersistedState:
    """What a node finds on its disk at start: all empty for a node that never ran."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)
    cluster_id: bytes = NO_CLUSTER

    @property
    def is_empty(self) -> bool:
        return self.snapshot is None and not self.entries and self.hard_state == HardState()


class LogStore(Protocol):
    """Durable Raft state, used from the event loop; calls are awaited one at a time."""

    @property
    def healthy(self) -> bool:
        """False once a write failed: the node must not acknowledge anything any more."""
        ...

    async def load(self) -> PersistedState:
        """Open the store and return what it holds (called once, before anything else)."""
        ...

    async def persist(self, entries: Sequence[Entry], hard_state: HardState | None) -> float:
        """Append ``entries`` (truncating any suffix from ``entries[0].index``) and replace the
        hard state, durably; returns the seconds spent making it durable."""
        ...

    async def install_snapshot(self, snapshot: Snapshot) -> None:
        """Make a snapshot received from the leader durable; it voids every entry it covers."""
        ...

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Save a snapshot the node took itself and drop the log entries it covers."""
        ...

    async def save_cluster_id(self, cluster_id: bytes) -> None:
        """Store the cluster this node belongs to, durably."""
        ...

    async def close(self) -> None: ...


class DiskLogStore:
    """``RaftStorage`` under ``data_dir``, driven from one worker thread."""

    def __init__(self, data_dir: Path, node_id: int) -> None:
        self.data_dir = data_dir
        self._storage: RaftStorage | None = None
        self._worker = SerialWorker(f"raft-disk-{node_id}")

    @property
    def healthy(self) -> bool:
        return self._storage is not None and self._storage.healthy

    def _open(self) -> RaftStorage:
        if self._storage is None:
            raise RuntimeError("the log store is not loaded")
        return self._storage

    async def load(self) -> PersistedState:
        storage = await self._worker.run(RaftStorage.open, self.data_dir)
        self._storage = storage
        cluster_id = read_cluster_id(self.data_dir)
        return PersistedState(storage.hard_state, storage.snapshot, storage.entries(), cluster_id)

    async def save_cluster_id(self, cluster_id: bytes) -> None:
        await self._worker.run(write_cluster_id, self.data_dir, cluster_id)

    async def persist(self, entries: Sequence[Entry], hard_state: HardState | None) -> float:
        storage = self._open()
        if not entries and hard_state is not None and storage.try_note_commit(hard_state):
            return 0.0  # a commit index alone: no I/O, so no hop to the worker and back
        return await self._worker.run(storage.persist, entries, hard_state)

    async def install_snapshot(self, snapshot: Snapshot) -> None:
        storage = self._open()
        await self._worker.run(storage.install_snapshot, snapshot)

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        storage = self._open()
        await self._worker.run(storage.save_snapshot, snapshot)

    async def close(self) -> None:
        if self._storage is not None:
            await self._worker.run(self._storage.close)
        self._worker.close()
