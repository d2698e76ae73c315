"""Errors raised by durable storage; each names the file (and offset) an operator should check."""

from __future__ import annotations

from pathlib import Path


class StorageError(Exception):
    """Base class for every storage failure."""


class CorruptLogError(StorageError):
    """A write-ahead log segment is damaged somewhere other than a torn tail; refusing to start."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        self.path = path
        self.offset = offset
        self.reason = reason
        super().__init__(f"corrupt write-ahead log {path} at byte offset {offset}: {reason}")


class CorruptSnapshotError(StorageError):
    """A snapshot file fails its checksum or is malformed."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"corrupt snapshot {path}: {reason}")


class CorruptHardStateError(StorageError):
    """The hard-state file (term, vote, commit) fails its checksum or is malformed."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"corrupt hard state {path}: {reason}")


class StorageLockedError(StorageError):
    """Another process (or another open ``RaftStorage``) holds the data directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"data directory is in use by another process (lock file {path} is held)")


class StorageClosedError(StorageError):
    """The storage was used after ``close()``."""
