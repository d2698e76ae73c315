"""The filesystem layer every storage file goes through.

The write-ahead log, hard-state and snapshot code never call ``os`` directly: they call a
``FileSystem``. Tests substitute a subclass that records the order of operations and can simulate
a crash (drop whatever was not fsynced), which is how fsync/rename ordering is checked.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

from raftnode.storage.errors import StorageLockedError

_ZERO_CHUNK = 1 << 20


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
        self.dsync_flag: int | None = getattr(os, "RWF_DSYNC", None)
        """``pwritev``'s flag for a durable write in one call; None where the platform or the
        filesystem lacks it (then ``write_durably_at`` writes and fdatasyncs)."""

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

    def open_positional(self, path: Path) -> OpenFile:
        """Open ``path`` write-only for writes at given offsets (``write_at``), creating it."""
        return OpenFile(path, os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))

    def write(self, f: OpenFile, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(f.fd, view)
            view = view[written:]

    def write_at(self, f: OpenFile, offset: int, data: bytes) -> None:
        """Write ``data`` at ``offset`` of a file from ``open_positional``."""
        view = memoryview(data)
        while view:
            written = os.pwrite(f.fd, view, offset)
            view, offset = view[written:], offset + written

    def datasync(self, f: OpenFile) -> None:
        """Make the file's data durable (``fdatasync``: metadata only when the size or the
        allocation changed)."""
        started = time.perf_counter()
        os.fdatasync(f.fd)
        self._count_fsync(started)

    def write_durably_at(self, f: OpenFile, offset: int, data: bytes) -> None:
        """``write_at`` then ``datasync``, in one system call where the kernel has
        ``RWF_DSYNC`` (Linux 4.7): the log's disk thread then takes the GIL back once per
        batch instead of twice."""
        if self.dsync_flag is not None:
            started = time.perf_counter()
            try:
                written = os.pwritev(f.fd, [data], offset, self.dsync_flag)
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                self.dsync_flag = None  # refused here: write, then fdatasync, from now on
            else:
                if written == len(data):
                    self._count_fsync(started)
                    return
                offset, data = offset + written, data[written:]  # short write: finish it
        self.write_at(f, offset, data)
        self.datasync(f)

    def zero_fill(self, f: OpenFile, start: int, end: int) -> None:
        """Write zeros over ``[start, end)`` and fsync (data and the new size), so later
        writes inside it change no metadata and ``datasync`` has no journal to commit."""
        chunk = bytes(min(end - start, _ZERO_CHUNK))
        offset = start
        while offset < end:
            self.write_at(f, offset, chunk[: end - offset])
            offset += len(chunk)
        self.fsync(f)

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
