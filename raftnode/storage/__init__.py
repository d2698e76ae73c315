"""Durable storage for the Raft core: write-ahead log segments, hard state and snapshots.

The runtime uses ``RaftStorage``; the other names are for error handling and for tests that
substitute the ``FileSystem``.
"""

from raftnode.storage.errors import (
    CorruptHardStateError,
    CorruptLogError,
    CorruptSnapshotError,
    StorageClosedError,
    StorageError,
    StorageLockedError,
)
from raftnode.storage.files import FileSystem, OpenFile
from raftnode.storage.raft_storage import DEFAULT_SEGMENT_BYTES, RaftStorage

__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "CorruptHardStateError",
    "CorruptLogError",
    "CorruptSnapshotError",
    "FileSystem",
    "OpenFile",
    "RaftStorage",
    "StorageClosedError",
    "StorageError",
    "StorageLockedError",
]
