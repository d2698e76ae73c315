"""An in-memory Raft log store, for tests: never use it in production (nothing reaches a disk).

``MemoryDisk`` is what survives a simulated crash: exactly what the node's log store made
durable. ``MemoryLogStore`` is a ``LogStore`` on one: give a restarted node a new store on the
same disk and it starts from what its predecessor persisted. Each write waits ``latency()``
seconds (zero by default) on the event loop, so on a ``VirtualTimeLoop`` a slow disk costs no
wall-clock time. A test that must watch or interrupt writes subclasses it: ``_before_write`` and
``_after_persist`` run around every write, ``_persisting`` sees each entry as it is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from raftnode.raft import Entry, HardState, Snapshot
from raftnode.storage.log_store import PersistedState
from raftnode.transport.auth import NO_CLUSTER


def no_latency() -> float:
    return 0.0


@dataclass
class MemoryDisk:
    """What survives a crash: the hard state, the last snapshot, the entries after it and the
    cluster's id."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)
    cluster_id: bytes = NO_CLUSTER

    def last_term_before(self, index: int) -> int:
        """The term of the entry at ``index - 1`` (0 when the disk does not hold it)."""
        if self.entries and self.entries[0].index <= index - 1:
            return self.entries[index - 1 - self.entries[0].index].term
        if self.snapshot is not None and self.snapshot.meta.index == index - 1:
            return self.snapshot.meta.term
        return 0

    def append(self, entries: Sequence[Entry]) -> None:
        """Write ``entries``, replacing any held from their first index on."""
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
        """Replace everything with a snapshot received from the leader."""
        self.snapshot = snapshot
        self.entries = []

    def compact(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` and drop the entries it covers."""
        self.snapshot = snapshot
        keep_from = snapshot.meta.index + 1
        if self.entries and self.entries[0].index < keep_from:
            del self.entries[: keep_from - self.entries[0].index]


class MemoryLogStore:
    """A ``LogStore`` on a ``MemoryDisk``; every write takes ``latency()`` seconds."""

    def __init__(self, disk: MemoryDisk, latency: Callable[[], float] = no_latency) -> None:
        self.disk = disk
        self.latency = latency

    @property
    def healthy(self) -> bool:
        return True

    async def load(self) -> PersistedState:
        d = self.disk
        return PersistedState(d.hard_state, d.snapshot, list(d.entries), d.cluster_id)

    async def persist(self, entries: Sequence[Entry], hard_state: HardState | None) -> float:
        await self._before_write()
        if entries:
            prev_term = self.disk.last_term_before(entries[0].index)
            for entry in entries:
                self._persisting(entry, prev_term)
                prev_term = entry.term
            self.disk.append(entries)
        if hard_state is not None:
            self.disk.hard_state = hard_state
        self._after_persist()
        return 0.0

    async def install_snapshot(self, snapshot: Snapshot) -> None:
        await self._before_write()
        self.disk.install(snapshot)

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        await self._before_write()
        self.disk.compact(snapshot)

    async def save_cluster_id(self, cluster_id: bytes) -> None:
        self.disk.cluster_id = cluster_id

    async def close(self) -> None:
        return None

    # -- where a test watches or interrupts writes -----------------------------------------

    async def _before_write(self) -> None:
        """Every write starts here: the disk's latency."""
        await asyncio.sleep(self.latency())

    def _persisting(self, entry: Entry, prev_term: int) -> None:
        """``entry`` is being written after an entry of ``prev_term``."""

    def _after_persist(self) -> None:
        """A ``persist`` is durable; the node has not acted on it yet."""
