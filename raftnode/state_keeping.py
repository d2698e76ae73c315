"""How the runtime keeps an application's state across restarts and ships it to followers.

Two kinds of state machine, two keepers with one interface for ``RaftNode``:

- ``StateMachine`` (in memory: ``apply``, ``snapshot() -> bytes``, ``restore(bytes)``): every
  ``snapshot_every_entries`` the whole state is serialized into a snapshot the log store saves,
  and a restart restores it and replays the log after it. Fine for small state (the embedding
  API's counter example, the simulation).
- ``DurableStateMachine`` (its own transactional store that records the applied index with the
  data, like etcd's bbolt: ``raftnode.kv.store.KeyValueStore``): a restart is open-and-go, the
  log is replayed only after the store's applied index. Log compaction saves only a marker at
  the store's *durable* index (``sync()`` in a worker thread), so nothing proportional to the
  data runs on the event loop or per compaction. Only when a follower needs compacted entries
  is a complete snapshot materialized, off the loop (``snapshot_to`` a file, memory-mapped for
  sending). A received snapshot is written to a file and swapped in by the store.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from raftnode.raft.types import Snapshot, SnapshotMeta
from raftnode.snapshot_file import seal_and_map

log = logging.getLogger(__name__)

T = TypeVar("T")
RunBlocking = Callable[..., Awaitable[Any]]
"""Runs a blocking function (with its arguments) off the event loop and awaits its result."""
MetaAt = Callable[[int], SnapshotMeta]
"""The snapshot meta (term, configuration) at a log index the node still holds."""


class StateMachine(Protocol):
    """What an application replicates with Raft. Called on the event loop, in log order."""

    def apply(self, index: int, data: bytes) -> Any:
        """Apply one committed command; the return value resolves that entry's ``propose``."""

    def snapshot(self) -> bytes:
        """Serialize the whole state (called between applies)."""

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot's (``b""`` means empty)."""


class _SnapshotFileInfo(Protocol):
    @property
    def applied_index(self) -> int: ...


@runtime_checkable
class DurableStateMachine(Protocol):
    """A state machine with its own durable store (see the module docstring)."""

    @property
    def applied_index(self) -> int:
        """The last index whose effects a ``commit`` stored (read at start)."""
        ...

    def apply(self, index: int, data: bytes) -> Any:
        """Apply one committed command in the open batch (event loop)."""

    def commit(self, applied_index: int | None = None) -> None:
        """Store the batch and ``applied_index`` in one transaction (event loop)."""

    def sync(self) -> int:
        """Make every commit durable; returns the durable index (worker thread)."""
        ...

    def snapshot_to(self, dest: Path) -> _SnapshotFileInfo:
        """Write a consistent snapshot file of the last commit (worker thread)."""
        ...

    def stage_restore(self, src: Path) -> Any:
        """Validate and copy a snapshot file beside the store (worker thread)."""

    def finish_restore(self) -> None:
        """Swap the staged copy in (event loop)."""


class StateKeeper(Protocol):
    """The runtime's side of either kind of state machine."""

    async def start(self, snapshot: Snapshot | None) -> tuple[Snapshot | None, int]:
        """Bring the state up at start; returns the snapshot to give the core and the index
        the state machine has applied."""
        ...

    def apply(self, index: int, data: bytes) -> Any: ...

    def end_batch(self, applied_index: int) -> None:
        """Every committed entry up to ``applied_index`` was handed to ``apply``."""

    async def compaction_snapshot(self, applied_index: int, meta_at: MetaAt) -> Snapshot | None:
        """A snapshot for log compaction now, or None when there is nothing new to compact."""
        ...

    async def install(self, snapshot: Snapshot) -> Snapshot:
        """Replace the state with a snapshot received from the leader; returns what the log
        store should keep of it."""
        ...

    async def materialize(self, meta_at: MetaAt) -> Snapshot | None:
        """A complete snapshot to send to followers, or None when this kind needs none."""
        ...

    def tasks(self) -> list[asyncio.Future[None]]:
        """Its background work in flight (for a stopping node to cancel)."""
        ...


class SnapshottingKeeper:
    """``StateKeeper`` for an in-memory ``StateMachine``: whole-state snapshots."""

    def __init__(self, state_machine: StateMachine) -> None:
        self.state_machine = state_machine

    async def start(self, snapshot: Snapshot | None) -> tuple[Snapshot | None, int]:
        if snapshot is None:
            return None, 0
        self.state_machine.restore(bytes(snapshot.data))
        return snapshot, snapshot.meta.index

    def apply(self, index: int, data: bytes) -> Any:
        return self.state_machine.apply(index, data)

    def end_batch(self, applied_index: int) -> None:
        return None

    async def compaction_snapshot(self, applied_index: int, meta_at: MetaAt) -> Snapshot | None:
        return Snapshot(meta_at(applied_index), self.state_machine.snapshot())

    async def install(self, snapshot: Snapshot) -> Snapshot:
        self.state_machine.restore(bytes(snapshot.data))
        return snapshot

    async def materialize(self, meta_at: MetaAt) -> Snapshot | None:
        return None  # every snapshot the core holds is complete

    def tasks(self) -> list[asyncio.Future[None]]:
        return []


BACKGROUND_SYNC_SECONDS = 0.1
"""Least time between two background ``sync()`` calls of a durable state machine."""


class DurableKeeper:
    """``StateKeeper`` for a ``DurableStateMachine``: markers, and snapshots on demand.

    After a commit, at most every ``BACKGROUND_SYNC_SECONDS`` and one at a time, it also runs
    the store's ``sync()`` in the worker thread. Without it the store's WAL grows until SQLite's
    own checkpoint, which runs inside a commit on the event loop: fsyncs of tens of MB that
    stalled every request in flight for 30 to 60 ms about every two seconds under load.
    """

    def __init__(
        self, state_machine: DurableStateMachine, work_dir: Path, run_blocking: RunBlocking
    ) -> None:
        self.state_machine = state_machine
        self.work_dir = work_dir
        self._run_blocking = run_blocking
        self._compacted_to = 0
        self._background_sync: asyncio.Future[None] | None = None
        self._last_sync = 0.0

    async def start(self, snapshot: Snapshot | None) -> tuple[Snapshot | None, int]:
        applied = self.state_machine.applied_index
        if snapshot is None:
            return None, applied
        index = snapshot.meta.index
        if applied < index:
            raise RuntimeError(
                f"the state machine store is at index {applied} but the Raft log was compacted "
                f"up to {index}: the entries in between are gone (was the store replaced or "
                "rolled back?); restore the node from a snapshot or remove it and add it anew"
            )
        self._compacted_to = index
        return Snapshot(snapshot.meta, b"", complete=False), applied

    def apply(self, index: int, data: bytes) -> Any:
        return self.state_machine.apply(index, data)

    def end_batch(self, applied_index: int) -> None:
        self.state_machine.commit(applied_index)
        loop = asyncio.get_running_loop()  # its clock: virtual time in the simulation
        if (
            self._background_sync is None
            and loop.time() - self._last_sync >= BACKGROUND_SYNC_SECONDS
        ):
            self._background_sync = asyncio.ensure_future(self._sync_in_background())

    def tasks(self) -> list[asyncio.Future[None]]:
        return [] if self._background_sync is None else [self._background_sync]

    async def _sync_in_background(self) -> None:
        try:
            await self._run_blocking(self.state_machine.sync)
        except Exception as e:  # the next compaction's sync fails the node if it persists
            log.warning("background sync of the state machine failed: %s", e)
        finally:
            self._last_sync = asyncio.get_running_loop().time()
            self._background_sync = None

    async def compaction_snapshot(self, applied_index: int, meta_at: MetaAt) -> Snapshot | None:
        durable = await self._run_blocking(self.state_machine.sync)
        if durable <= self._compacted_to:
            return None
        self._compacted_to = durable
        return Snapshot(meta_at(durable), b"", complete=False)

    async def install(self, snapshot: Snapshot) -> Snapshot:
        path = await self._run_blocking(_write_temp_file, self.work_dir, snapshot.data)
        try:
            await self._run_blocking(self.state_machine.stage_restore, path)
        finally:
            path.unlink(missing_ok=True)
        self.state_machine.finish_restore()
        self._compacted_to = snapshot.meta.index
        return Snapshot(snapshot.meta, b"", complete=False)

    async def materialize(self, meta_at: MetaAt) -> Snapshot | None:
        data, index = await self._run_blocking(self._snapshot_map)
        return Snapshot(meta_at(index), data)

    async def export(
        self, meta_at: MetaAt, peers: dict[int, Any]
    ) -> tuple[mmap.mmap, SnapshotMeta, str]:
        """A snapshot file for an operator's backup: the store's snapshot sealed with its Raft
        position (``raftnode.snapshot_file``); returns it mapped, its meta and its SHA-256."""
        fd, name = tempfile.mkstemp(prefix=".export-", suffix=".snapshot", dir=self.work_dir)
        os.close(fd)
        path = Path(name)
        try:
            info = await self._run_blocking(self.state_machine.snapshot_to, path)
            meta = meta_at(info.applied_index)
            data, sha256 = await self._run_blocking(seal_and_map, path, meta, dict(peers))
        finally:
            path.unlink(missing_ok=True)
        return data, meta, sha256

    def _snapshot_map(self) -> tuple[mmap.mmap, int]:
        """Snapshot to a file, map it and unlink it: the map keeps the data for as long as a
        follower's transfer holds it, and nothing is left behind (worker thread)."""
        fd, name = tempfile.mkstemp(prefix=".send-", suffix=".snapshot", dir=self.work_dir)
        os.close(fd)
        path = Path(name)
        try:
            info = self.state_machine.snapshot_to(path)
            with path.open("rb") as f:
                data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        finally:
            path.unlink(missing_ok=True)
        return data, info.applied_index


def _write_temp_file(directory: Path, data: bytes | mmap.mmap) -> Path:
    fd, name = tempfile.mkstemp(prefix=".received-", suffix=".snapshot", dir=directory)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(name)


def executor_runner(executor: Any) -> RunBlocking:
    """A ``RunBlocking`` on a ``concurrent.futures`` executor."""

    async def run(fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    return run
