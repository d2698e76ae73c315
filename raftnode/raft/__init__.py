"""The consensus core: a pure, deterministic Raft state machine (no I/O, no clock reads)."""

from raftnode.raft.config import RaftConfig
from raftnode.raft.core import RaftCore, Ready, Role, SoftState
from raftnode.raft.errors import ConfChangeError, NotLeaderError, RaftError
from raftnode.raft.progress import Progress, ProgressState
from raftnode.raft.types import (
    NO_NODE,
    ConfChange,
    ConfChangeOp,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SnapshotMeta,
)

__all__ = [
    "NO_NODE",
    "ConfChange",
    "ConfChangeError",
    "ConfChangeOp",
    "ConfState",
    "Entry",
    "EntryType",
    "HardState",
    "Message",
    "MessageType",
    "NotLeaderError",
    "Progress",
    "ProgressState",
    "RaftConfig",
    "RaftCore",
    "RaftError",
    "ReadState",
    "Ready",
    "Role",
    "Snapshot",
    "SnapshotMeta",
    "SoftState",
]
