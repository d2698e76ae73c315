"""``RaftStorage``: the durable state of one Raft node, as the runtime sees it.

Directory layout::

    <data_dir>/LOCK         advisory lock: one process per data directory
    <data_dir>/hardstate    term, vote, commit (see ``hardstate``)
    <data_dir>/wal/*.wal    write-ahead log segments (see ``wal``)
    <data_dir>/snap/*.snap  the latest snapshot (see ``snapshots``)

Durability contract:

* ``persist`` returns only once its entries are fsynced (one fsync of the active segment for the
  whole batch) and, if term or vote changed, the hard-state file has been replaced atomically.
  The WAL is written before the hard state, so a saved commit index never points past the
  durable log. The runtime must not send messages (e.g. a vote) before ``persist`` returns.
* A change of ``commit`` alone is NOT written immediately: it is kept in memory and written with
  the next term/vote change, the next snapshot, or ``close``. Losing it in a crash is safe
  because the commit index can always be re-learned from the leader; on restart
  ``hard_state.commit`` is ``max(saved commit, snapshot index)``.
* ``save_snapshot`` makes the snapshot durable before any segment it covers is removed.
* ``save_snapshot`` (a local snapshot) keeps the entries after it; ``install_snapshot`` (a
  leader's snapshot that replaced the log, ``Ready.snapshot``) also voids every entry after its
  index, durably, exactly as the consensus core discards its log.

Thread-safety: every public method takes an internal lock, so calls from different threads are
serialised; nothing here touches an event loop, so the Tornado runtime may call ``persist`` from a
worker thread. After an I/O error the storage refuses further writes (``healthy`` turns False);
restart the process to recover.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from raftnode.raft.types import NO_NODE, Entry, HardState, Snapshot
from raftnode.storage.errors import StorageClosedError, StorageError
from raftnode.storage.files import FileSystem, OpenFile
from raftnode.storage.hardstate import HardStateFile
from raftnode.storage.snapshots import SnapshotFiles
from raftnode.storage.wal import WriteAheadLog

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES = 8 << 20
"""Segments are removed whole once a compaction covers them, and recovery decodes every frame
of the segments that remain: small segments keep restart time bounded by the entries since the
last compaction, not by everything the active segment ever held (64 MiB took about 2 s to
replay at 280k small entries)."""


class RaftStorage:
    """Write-ahead log, hard state and snapshot of one node, recovered by ``open``."""

    def __init__(
        self,
        *,
        fs: FileSystem,
        data_dir: Path,
        lock_file: OpenFile,
        wal: WriteAheadLog,
        hard_state_file: HardStateFile,
        snapshot_files: SnapshotFiles,
        hard_state: HardState,
        saved_hard_state: HardState,
        snapshot: Snapshot | None,
        entries: list[Entry],
    ) -> None:
        self.fs = fs
        self.data_dir = data_dir
        self.hard_state = hard_state
        """The hard state as recovered by ``open`` (not updated by ``persist``)."""
        self.snapshot = snapshot
        """The latest snapshot as recovered by ``open`` (not updated by ``save_snapshot``)."""
        self.last_fsync_seconds = 0.0
        """Seconds spent in fsyncs by the last ``persist`` call (for a metrics histogram)."""
        self._entries = entries
        self._lock_file = lock_file
        self._wal = wal
        self._hard_state_file = hard_state_file
        self._snapshot_files = snapshot_files
        self._saved = saved_hard_state
        self._current = saved_hard_state
        self._snapshot_index = snapshot.meta.index if snapshot else 0
        self._mutex = threading.Lock()
        self._closed = False
        self._failure: BaseException | None = None

    @classmethod
    def open(
        cls,
        data_dir: str | Path,
        *,
        fs: FileSystem | None = None,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> RaftStorage:
        """Open (creating if needed) and recover the storage in ``data_dir``.

        Raises CorruptLogError, CorruptSnapshotError or CorruptHardStateError (each naming the
        file) when the data cannot be trusted, and StorageLockedError when it is in use.
        """
        fs = fs or FileSystem()
        data_dir = Path(data_dir)
        if fs.makedirs(data_dir):
            fs.fsync_dir(data_dir.parent)
        lock_file = fs.lock(data_dir / "LOCK")
        try:
            snap_dir = data_dir / "snap"
            if fs.makedirs(snap_dir):
                fs.fsync_dir(data_dir)
            snapshot_files = SnapshotFiles(fs, snap_dir)
            snapshot = snapshot_files.load_latest()
            snapshot_index = snapshot.meta.index if snapshot else 0
            hard_state_file = HardStateFile(fs, data_dir)
            saved = hard_state_file.load() or HardState()
            wal, replayed = WriteAheadLog.open(
                fs, data_dir / "wal", segment_bytes=segment_bytes, snapshot_index=snapshot_index
            )
        except BaseException:
            fs.close(lock_file)
            raise
        entries = [e for e in replayed if e.index > snapshot_index]
        recovered = _hard_state_within_log(saved, snapshot_index, wal.last_index, hard_state_file)
        log.info(
            "storage recovered",
            extra={
                "fields": {
                    "dir": str(data_dir),
                    "term": recovered.term,
                    "vote": recovered.vote,
                    "commit": recovered.commit,
                    "snapshot_index": snapshot_index,
                    "first_index": entries[0].index if entries else snapshot_index + 1,
                    "last_index": wal.last_index,
                }
            },
        )
        return cls(
            fs=fs,
            data_dir=data_dir,
            lock_file=lock_file,
            wal=wal,
            hard_state_file=hard_state_file,
            snapshot_files=snapshot_files,
            hard_state=recovered,
            saved_hard_state=saved,
            snapshot=snapshot,
            entries=entries,
        )

    def entries(self) -> list[Entry]:
        """The entries recovered by ``open`` after the snapshot's index, in order."""
        return list(self._entries)

    @property
    def last_index(self) -> int:
        """The last durable entry's index (or the snapshot's index when it is higher)."""
        return self._wal.last_index

    @property
    def healthy(self) -> bool:
        """False once an I/O error stopped the write-ahead log (the node should restart)."""
        return self._failure is None and self._wal.failure is None and not self._closed

    def persist(self, entries: Sequence[Entry], hard_state: HardState | None = None) -> float:
        """Append ``entries`` (replacing a conflicting suffix) and record ``hard_state``.

        One fsync of the WAL for the whole batch; the hard-state file is replaced (atomically,
        after the WAL) only when term or vote changed. Returns the seconds spent in fsyncs, also
        left in ``last_fsync_seconds``. Raises ValueError, changing nothing, on a batch with a
        gap or one that rewrites snapshotted entries, or a hard state going backwards.
        """
        with self._mutex:
            self._check_usable()
            if hard_state is not None:
                last_index = entries[-1].index if entries else self._wal.last_index
                _check_hard_state(self._current, hard_state, last_index)
            seconds = self._wal.append(entries)
            if hard_state is not None:
                self._current = hard_state
                if (hard_state.term, hard_state.vote) != (self._saved.term, self._saved.vote):
                    seconds += self._save_hard_state()
            self.last_fsync_seconds = seconds
            return seconds

    def try_note_commit(self, hard_state: HardState) -> bool:
        """Record ``hard_state`` when it moves only the commit index, which needs no I/O (the
        commit index is written with the next term, vote or snapshot): True when done. False,
        changing nothing, when term or vote changed or another thread holds the storage (then
        ``persist`` it in the worker as usual); raises like ``persist`` on a bad hard state.
        Never blocks: the event loop calls it."""
        if not self._mutex.acquire(blocking=False):
            return False
        try:
            self._check_usable()
            if (hard_state.term, hard_state.vote) != (self._saved.term, self._saved.vote):
                return False
            _check_hard_state(self._current, hard_state, self._wal.last_index)
            self._current = hard_state
            return True
        finally:
            self._mutex.release()

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Save ``snapshot`` atomically, then drop the segments it makes unnecessary.

        Segments are removed only when all their entries are <= ``snapshot.meta.index``; the
        segment holding ``index + 1`` onwards is kept. A pending commit index is written too.
        """
        with self._mutex:
            self._check_usable()
            index = snapshot.meta.index
            if index < self._snapshot_index:
                raise ValueError(
                    f"snapshot at index {index} is older than the saved one at "
                    f"{self._snapshot_index}"
                )
            try:
                self._snapshot_files.save(snapshot)
            except OSError as exc:
                self._failure = exc
                raise
            self._snapshot_index = index
            self._wal.set_snapshot_index(index)
            if self._current != self._saved:
                self._save_hard_state()
            self._wal.compact(index)

    def install_snapshot(self, snapshot: Snapshot) -> None:
        """Save a snapshot received from the leader, which replaces the whole log: entries after
        its index are voided (a reset record in the WAL), so recovery never brings them back."""
        self.save_snapshot(snapshot)
        with self._mutex:
            self._check_usable()
            self._wal.reset(snapshot.meta.index, snapshot.meta.term)

    def compact(self, upto_index: int) -> int:
        """Remove segments whose entries are all <= ``upto_index``; return how many.

        ``upto_index`` may not exceed the saved snapshot's index: those entries would be lost.
        """
        with self._mutex:
            self._check_usable()
            if upto_index > self._snapshot_index:
                raise ValueError(
                    f"cannot compact up to {upto_index}: the snapshot only covers up to "
                    f"{self._snapshot_index}"
                )
            return self._wal.compact(upto_index)

    def close(self) -> None:
        """Write a pending commit index, close files and release the data directory."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            try:
                failed = self._failure is not None or self._wal.failure is not None
                if self._current != self._saved and not failed:
                    self._save_hard_state()
            finally:
                self._wal.close()
                self.fs.close(self._lock_file)

    def _save_hard_state(self) -> float:
        try:
            seconds = self._hard_state_file.save(self._current)
        except OSError as exc:
            self._failure = exc
            raise
        self._saved = self._current
        return seconds

    def _check_usable(self) -> None:
        if self._closed:
            raise StorageClosedError(f"storage in {self.data_dir} is closed")
        if self._failure is not None:
            raise StorageError(
                f"storage in {self.data_dir} stopped after an I/O error ({self._failure!r}); "
                "restart the node to recover"
            )

    def __enter__(self) -> RaftStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_hard_state(current: HardState, new: HardState, last_index: int) -> None:
    if new.term < current.term:
        raise ValueError(f"term may not go back from {current.term} to {new.term}")
    if new.term == current.term and current.vote not in (NO_NODE, new.vote):
        raise ValueError(
            f"vote in term {new.term} may not change from {current.vote} to {new.vote}"
        )
    if new.commit > last_index:
        raise ValueError(f"commit {new.commit} is past the last entry {last_index}")


def _hard_state_within_log(
    saved: HardState, snapshot_index: int, last_index: int, file: HardStateFile
) -> HardState:
    """The saved hard state, its commit index at least the snapshot's and at most the log's
    end (a commit beyond the durable log is clamped, with a warning naming the file)."""
    commit = max(saved.commit, snapshot_index)
    if commit > last_index:
        log.warning(
            "hard state commit clamped to the log",
            extra={
                "fields": {
                    "file": str(file.path),
                    "saved_commit": saved.commit,
                    "last_index": last_index,
                }
            },
        )
        commit = last_index
    return HardState(term=saved.term, vote=saved.vote, commit=commit)
