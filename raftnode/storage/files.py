"""The filesystem layer every storage file goes through.

The write-ahead log, hard-state and snapshot code never call ``os`` directly: they call a
``FileSystem``. Tests substitute a subclass that records the order of operations and can simulate
a crash (drop whatever was not fsynced), which is how fsync/rename ordering is checked.
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

from raftnode.storage.errors import StorageLockedError


@dataclass(eq=False, slots=True)
class OpenFile:
    """A file opened for appending through a ``FileSystem``."""

    path: Path
    fd: int


class FileSystem:
    """Thin wrapper over the OS calls storage needs; counts fsyncs and the time spent in them."""

    def __init__(self) -> None:
        self.fsync_count = 0
        """fsyncs of files and directories issued so far."""
        self.fsync_seconds = 0.0
        """Total wall time spent in those fsyncs."""

    def makedirs(self, path: Path) -> bool:
        """Create ``path`` (and parents); return True when it did not exist before."""
        if path.is_dir():
            return False
        path.mkdir(parents=True, exist_ok=True)
        return True

    def listdir(self, path: Path) -> list[str]:
        return sorted(os.listdir(path))

    def read(self, path: Path) -> bytes:
        return path.read_bytes()

    def open(self, path: Path, *, truncate: bool = False) -> OpenFile:
        """Open ``path`` write-only for appending, creating it; ``truncate`` empties it first."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | (os.O_TRUNC if truncate else 0)
        return OpenFile(path, os.open(path, flags, 0o600))

    def write(self, f: OpenFile, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(f.fd, view)
            view = view[written:]

    def fsync(self, f: OpenFile) -> None:
        started = time.perf_counter()
        os.fsync(f.fd)
        self._count_fsync(started)

    def truncate(self, f: OpenFile, size: int) -> None:
        os.ftruncate(f.fd, size)

    def close(self, f: OpenFile) -> None:
        os.close(f.fd)

    def rename(self, src: Path, dst: Path) -> None:
        os.replace(src, dst)

    def unlink(self, path: Path) -> None:
        path.unlink()

    def fsync_dir(self, path: Path) -> None:
        """Make the directory's entries (creations, renames, removals) durable."""
        started = time.perf_counter()
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._count_fsync(started)

    def lock(self, path: Path) -> OpenFile:
        """Take an exclusive advisory lock on ``path``; released by ``close``."""
        f = self.open(path)
        try:
            fcntl.flock(f.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close(f)
            raise StorageLockedError(path) from None
        return f

    def _count_fsync(self, started: float) -> None:
        self.fsync_count += 1
        self.fsync_seconds += time.perf_counter() - started
