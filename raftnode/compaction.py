"""Snapshots in the runtime: compacting the log in the background, materializing a complete
snapshot for a follower that needs one, and installing one received from the leader.

None of it blocks the ready loop: compaction and materializing run as tasks (the state keeper
does the O(data) part off the event loop), and the loop only hands the results to the core.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from raftnode.metrics import NodeMetrics
from raftnode.raft.core import RaftCore
from raftnode.raft.types import Snapshot
from raftnode.state_keeping import StateKeeper
from raftnode.storage.log_store import LogStore

log = logging.getLogger("raftnode.node")


def _log_snapshot(event: str, snapshot: Snapshot, started: float) -> None:
    fields = {
        "index": snapshot.meta.index,
        "bytes": len(snapshot.data),
        "seconds": round(time.monotonic() - started, 4),
    }
    log.info(event, extra={"fields": fields})


class SnapshotDriver:
    """Owns the snapshot tasks of one node and the index of its latest snapshot."""

    def __init__(
        self,
        keeper: StateKeeper,
        log_store: LogStore,
        metrics: NodeMetrics,
        every_entries: int,
        on_failure: Callable[[BaseException], None],
        wake: asyncio.Event,
        applied_index: Callable[[], int],
    ) -> None:
        self.keeper = keeper
        self.log_store = log_store
        self.metrics = metrics
        self.every_entries = every_entries
        self._on_failure = on_failure
        self._wake = wake
        self._applied_index = applied_index
        """The node's applied index, read when a compaction starts: an in-memory state
        machine's snapshot is taken at that very moment and must carry that index."""
        self.last_index = 0
        """The index of the latest snapshot (taken, installed or loaded at start)."""
        self._compaction: asyncio.Task[None] | None = None
        self._materializing: asyncio.Task[None] | None = None
        self._installed_marker: Snapshot | None = None
        self.stopping = False

    async def install(self, snapshot: Snapshot) -> None:
        """A snapshot from the leader replaces the state: the state machine takes it first,
        then the log store keeps what the keeper says (the snapshot, or a marker of it)."""
        meta = snapshot.meta
        started = time.monotonic()
        kept = await self.keeper.install(snapshot)
        await self.log_store.install_snapshot(kept)
        if not kept.complete:
            self._installed_marker = kept
        self.last_index = meta.index
        self.metrics.snapshot_bytes.observe(len(snapshot.data))
        self.metrics.snapshots.labels(kind="received").inc()
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

    def after_advance(self, core: RaftCore, applied_index: int) -> None:
        """After each ``Ready``: keep only a marker of an installed snapshot (its data is in the
        durable state machine now), and every ``every_entries`` applied entries compact the log
        in the background."""
        if self._installed_marker is not None:
            core.compact(self._installed_marker)
            self._installed_marker = None
        if applied_index - self.last_index < self.every_entries:
            return
        if core.applied_index < applied_index or self._compaction is not None:
            return
        self._compaction = asyncio.ensure_future(self._compact(core))

    def want_complete(self, core: RaftCore) -> None:
        """A follower needs a complete snapshot: take one off the loop (once at a time)."""
        if self._materializing is None:
            self._materializing = asyncio.ensure_future(self._materialize(core))

    def tasks(self) -> list[asyncio.Task[None]]:
        return [t for t in (self._compaction, self._materializing) if t is not None]

    async def _compact(self, core: RaftCore) -> None:
        started = time.monotonic()
        try:
            snapshot = await self.keeper.compaction_snapshot(
                self._applied_index(), core.snapshot_meta
            )
            if snapshot is None or snapshot.meta.index <= self.last_index:
                return
            await self.log_store.save_snapshot(snapshot)
            if self.stopping or snapshot.meta.index <= self.last_index:
                return
            core.compact(snapshot)
            self.last_index = snapshot.meta.index
        except ValueError as e:
            # A snapshot from the leader was installed while this compaction ran: the log no
            # longer holds its index, or storage already has a newer snapshot. Nothing to do.
            log.info("log compaction skipped", extra={"fields": {"why": str(e)}})
            return
        except Exception as e:
            self._on_failure(e)
            return
        finally:
            self._compaction = None
        self.metrics.snapshot_bytes.observe(len(snapshot.data))
        self.metrics.snapshots.labels(kind="taken").inc()
        _log_snapshot("log compacted", snapshot, started)

    async def _materialize(self, core: RaftCore) -> None:
        started = time.monotonic()
        try:
            snapshot = await self.keeper.materialize(core.snapshot_meta)
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
            self._on_failure(e)
            return
        finally:
            self._materializing = None
        self.metrics.snapshots.labels(kind="materialized").inc()
        _log_snapshot("snapshot materialized for a follower", snapshot, started)
