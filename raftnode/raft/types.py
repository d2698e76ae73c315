"""Values that flow in and out of the consensus core.

Everything here is immutable data: log entries, the persistent hard state, snapshot metadata,
cluster configurations and the messages nodes exchange. Storage persists these, the transport
encodes them, and the core (``raftnode.raft.core``) consumes and produces them.
"""

from __future__ import annotations

import json
import mmap
from dataclasses import dataclass, field
from enum import IntEnum

from raftnode.value_type import value_type

NO_NODE = 0
"""Node ids are positive integers; 0 means "nobody" (no vote, no known leader)."""


class EntryType(IntEnum):
    """What a log entry carries: application data, or a cluster configuration."""

    NORMAL = 0
    CONF_CHANGE = 1


@value_type
class Entry:
    """One log entry. A NORMAL entry with empty data is the leader's no-op."""

    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


@value_type
class HardState:
    """What a node must persist before it answers a vote or a term change."""

    term: int = 0
    vote: int = NO_NODE
    commit: int = 0


@dataclass(frozen=True, slots=True)
class ConfState:
    """A cluster configuration: voting members and non-voting learners."""

    voters: frozenset[int] = frozenset()
    learners: frozenset[int] = frozenset()

    def members(self) -> frozenset[int]:
        return self.voters | self.learners

    def to_json(self) -> dict[str, list[int]]:
        return {"voters": sorted(self.voters), "learners": sorted(self.learners)}

    @classmethod
    def from_json(cls, obj: dict[str, list[int]]) -> ConfState:
        return cls(frozenset(obj.get("voters", ())), frozenset(obj.get("learners", ())))


class ConfChangeOp(IntEnum):
    BOOTSTRAP = 0
    ADD_VOTER = 1
    ADD_LEARNER = 2
    REMOVE = 3


@dataclass(frozen=True, slots=True)
class ConfChange:
    """A single-server membership change, as stored in a CONF_CHANGE entry.

    The entry carries both the change (for the application, which may need ``context``, e.g.
    the new member's addresses) and the complete resulting configuration, so any node can
    read its configuration from one entry without replaying earlier ones.
    """

    op: ConfChangeOp
    node_id: int
    result: ConfState
    context: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps(
            {
                "op": int(self.op),
                "node_id": self.node_id,
                "result": self.result.to_json(),
                "context": self.context,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> ConfChange:
        obj = json.loads(data)
        return cls(
            op=ConfChangeOp(obj["op"]),
            node_id=int(obj["node_id"]),
            result=ConfState.from_json(obj["result"]),
            context=dict(obj.get("context", {})),
        )


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Where a snapshot stands in the log, and the configuration in force there."""

    index: int = 0
    term: int = 0
    conf: ConfState = ConfState()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A state-machine image covering the log up to and including ``meta.index``.

    ``complete`` False marks a compaction point of a durable state machine (one that keeps its
    own state on disk): ``data`` is empty, and before the leader can send it to a follower the
    application must materialize a complete one (``Ready.snapshot_wanted``). ``data`` may be a
    memory map of a snapshot file: the core only takes its length and slices of it.
    """

    meta: SnapshotMeta
    data: bytes | mmap.mmap = b""
    complete: bool = True


class MessageType(IntEnum):
    PRE_VOTE = 1
    PRE_VOTE_RESP = 2
    VOTE = 3
    VOTE_RESP = 4
    APPEND = 5
    APPEND_RESP = 6
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    SNAPSHOT = 9
    SNAPSHOT_RESP = 10
    TIMEOUT_NOW = 11
    READ_INDEX = 12
    READ_INDEX_RESP = 13
    REMOVED = 14
    """From a leader to a node its configuration does not list: stop campaigning."""


@value_type
class Message:
    """A message between two nodes. Fields unused by a type keep their defaults.

    Field use by type:
      PRE_VOTE/VOTE: term (for PRE_VOTE, the term the candidate would take), log_term/index
        (the candidate's last entry), force (leadership transfer: ignore leader stickiness),
        leader_lost (the candidate's link to its leader was reported lost: a voter whose own link
        to its leader is lost too may grant it despite stickiness; see
        ``RaftCore.report_peer_lost``).
      *_RESP to votes: term, reject.
      APPEND: term, log_term/index (the entry before ``entries``), entries, commit.
      APPEND_RESP: index (the last index now matching, or the rejected index), reject,
        reject_hint (the follower's best guess at a matching index), log_term (the term at
        reject_hint, 0 when unknown).
      HEARTBEAT: commit (capped at the follower's match), index (the leader's commit, for the
        follower's lag), context (ReadIndex round). HEARTBEAT_RESP: context echoed.
      SNAPSHOT: snapshot meta, offset and data chunk, done when the chunk is the last.
      SNAPSHOT_RESP: index (snapshot index), offset (bytes received so far), reject.
      READ_INDEX: context (the requester's read id), lease (answer from the lease if valid).
      READ_INDEX_RESP: context, index (the read index), reject (no read possible now).
    """

    type: MessageType
    to: int
    frm: int
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    context: int = 0
    force: bool = False
    lease: bool = False
    leader_lost: bool = False
    snapshot_meta: SnapshotMeta | None = None
    offset: int = 0
    data: bytes = b""
    done: bool = False


@value_type
class ReadState:
    """The answer to a read request: once ``applied >= index`` the read is linearizable.

    ``error`` is set (and ``index`` is 0) when the read cannot be served, e.g. the leader
    stepped down or is unknown; the application answers 503 and the client retries.
    """

    request_id: int
    index: int
    error: str | None = None
