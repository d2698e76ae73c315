"""Commands of the key-value state machine, as carried in log entries (compact JSON).

A command is validated when the client request arrives, encoded once, replicated, and decoded
on every node when its entry applies (``decode_entry``). The kinds:

- ``Command``: a put or a delete of one key. ``prev_value`` is compare-and-set on the value
  (``None`` with ``cas`` set means "must be absent"); ``prev_revision`` compares the key's
  ``mod_revision`` (0 = must be absent), so a value that changed and changed back still fails;
  ``lease`` attaches a put's key to a lease.
- ``Txn``: compares on any keys, then one list of operations if all hold, else another; the
  whole of it applies at one revision.
- ``FormatUpgrade``: moves the store to a newer format (per-key ``version``, the history
  window, leases) at one log position, so that every node changes format at the same point.
- ``LeaseGrant`` and ``LeaseRevoke``: a lease (id chosen before proposing, TTL) begins or
  ends; its end deletes its keys. When a lease expires is the leader's decision
  (``raftnode.kv.lessor``), never part of an entry.

Entries a release before peer protocol version ``TXN_PROTOCOL_VERSION`` cannot apply (a
``Txn``, a ``FormatUpgrade``, a ``Command`` with ``prev_revision``) say so in
``needs_protocol``; they are only proposed once every member speaks that version. Likewise
``LEASE_PROTOCOL_VERSION`` for the lease entries, a put with a lease and the upgrade to 4,
and ``COMPACT_PROTOCOL_VERSION`` for ``Compact`` (the operator's compaction of the history
window, ``raftnode.kv.history``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from raftnode.json_text import compact_json, parse_json
from raftnode.value_type import value_type

Op = Literal["put", "delete"]

LEGACY_PROTOCOL_VERSION = 2
"""Any member applies entries that need no more than this."""
TXN_PROTOCOL_VERSION = 4
"""The peer protocol version (``raftnode.transport.auth``) of releases that apply ``Txn``,
``FormatUpgrade`` and revision compares."""
REVISIONS_FORMAT = 2
"""The store format that keeps a ``version`` per key (``raftnode.kv.store``)."""
HISTORY_PROTOCOL_VERSION = 5
"""The peer protocol version of releases that apply ``FormatUpgrade`` to ``HISTORY_FORMAT``."""
HISTORY_FORMAT = 3
"""The store format that keeps a window of recent changes for watches
(``raftnode.kv.history``)."""
LEASE_PROTOCOL_VERSION = 6
"""The peer protocol version of releases that apply leases (``LeaseGrant``, ``LeaseRevoke``,
a put attached to a lease) and ``FormatUpgrade`` to ``LEASE_FORMAT``."""
LEASE_FORMAT = 4
"""The store format that keeps leases and the keys attached to them (``raftnode.kv.leases``)."""
COMPACT_PROTOCOL_VERSION = 7
"""The peer protocol version of releases that apply ``Compact``. It needs no new store format:
it drops rows of the history tables of ``HISTORY_FORMAT`` and moves their ``compact_rev``, as
the automatic bounds already do; an older release would skip it as undecodable and keep rows
every other node dropped, so it is proposed only once every member speaks this version."""
MAX_LEASE_ID = (1 << 63) - 1
MAX_REVISION = (1 << 63) - 1
"""The largest revision an entry or a request may name (SQLite's integers are 64-bit)."""


def _digest(what: object) -> bytes:
    return hashlib.sha256(compact_json(what).encode("utf-8", "surrogatepass")).digest()[:16]


@value_type
class Command:
    op: Op
    key: str
    value: str | None = None
    cas: bool = False
    prev_value: str | None = None
    request_id: str | None = None
    """The client's idempotency key: a command carrying one applies at most once; a retry
    gets the first outcome (Raft dissertation 6.3)."""
    stamp: float = 0.0
    """The proposing leader's wall clock (seconds), for expiring remembered request ids the
    same way on every node."""
    prev_revision: int | None = None
    """Compare on ``mod_revision``: the command only takes effect when the key was last
    modified at this revision (0: the key must be absent)."""
    lease: int | None = None
    """A put attached to this lease (deleted when it expires or is revoked); a put without one
    detaches the key from any lease."""

    @property
    def needs_protocol(self) -> int:
        if self.lease is not None:
            return LEASE_PROTOCOL_VERSION
        return LEGACY_PROTOCOL_VERSION if self.prev_revision is None else TXN_PROTOCOL_VERSION

    def encode(self) -> bytes:
        obj: dict[str, object] = {"op": self.op, "k": self.key}
        if self.op == "put":
            obj["v"] = self.value
        if self.cas:
            obj["p"] = self.prev_value
        if self.prev_revision is not None:
            obj["r"] = self.prev_revision
        if self.lease is not None:
            obj["l"] = self.lease
        if self.request_id is not None:
            obj["i"] = self.request_id
            obj["t"] = self.stamp
        return compact_json(obj).encode()

    def fingerprint(self) -> bytes:
        """A digest of what the command does (not who sent it or when): the same idempotency
        key arriving with a different command is refused instead of answered with the first
        command's outcome."""
        what: list[object] = [self.op, self.key, self.value, self.cas, self.prev_value]
        if self.prev_revision is not None:  # the digest of older commands stays as it was
            what.append(self.prev_revision)
        if self.lease is not None:
            what += ["lease", self.lease]
        return _digest(what)

    @classmethod
    def decode(cls, data: bytes) -> Command:
        entry = decode_entry(data)
        if not isinstance(entry, Command):
            raise ValueError(f"not a put or delete: {entry!r}")
        return entry

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Command:
        op = obj["op"]
        if op not in ("put", "delete"):
            raise ValueError(f"unknown op {op!r}")
        prev_revision = obj.get("r")
        if prev_revision is not None and (type(prev_revision) is not int or prev_revision < 0):
            raise TypeError("prev_revision must be a non-negative integer")
        lease = obj.get("l")
        if lease is not None:
            lease = _lease_id(lease)
        return cls(
            op=op,
            key=obj["k"],
            value=obj.get("v"),
            cas="p" in obj,
            prev_value=obj.get("p"),
            request_id=obj.get("i"),
            stamp=float(obj.get("t", 0.0)),
            prev_revision=prev_revision,
            lease=lease,
        )


def _lease_id(value: object) -> int:
    if type(value) is not int or not 0 < value <= MAX_LEASE_ID:
        raise TypeError(f"a lease id is an integer from 1 to {MAX_LEASE_ID}, got {value!r}")
    return value


# -- transactions ------------------------------------------------------------------------------

CompareTarget = Literal["value", "mod_revision", "create_revision", "version", "exists"]
CompareOp = Literal["equal", "not_equal", "less", "greater"]
TxnOpKind = Literal["put", "delete", "get"]
COMPARE_TARGETS: tuple[str, ...] = ("value", "mod_revision", "create_revision", "version", "exists")
COMPARE_OPS: tuple[str, ...] = ("equal", "not_equal", "less", "greater")
TXN_OPS: tuple[str, ...] = ("put", "delete", "get")


@dataclass(frozen=True, slots=True)
class Compare:
    """One condition of a ``Txn`` on one key's current state.

    ``value`` is a string for target ``value``, a non-negative integer for the revision targets
    (an absent key has 0 for all three), a boolean for ``exists`` (``equal``/``not_equal``
    only). A value compare on an absent key never holds, as in etcd.
    """

    key: str
    target: CompareTarget
    op: CompareOp
    value: str | int | bool

    def to_json(self) -> list[object]:
        return [self.key, self.target, self.op, self.value]

    @classmethod
    def from_json(cls, item: Any) -> Compare:
        key, target, op, value = item
        if not isinstance(key, str) or target not in COMPARE_TARGETS or op not in COMPARE_OPS:
            raise ValueError(f"bad compare {item!r}")
        if target == "value" and not isinstance(value, str):
            raise TypeError("a value compare needs a string")
        if target == "exists" and (not isinstance(value, bool) or op not in ("equal", "not_equal")):
            raise TypeError("an exists compare needs a boolean and equal or not_equal")
        if target not in ("value", "exists") and (type(value) is not int or value < 0):
            raise TypeError("a revision compare needs a non-negative integer")
        return cls(key, target, op, value)


@dataclass(frozen=True, slots=True)
class TxnOp:
    """One operation of a ``Txn`` branch: put (with ``value``), delete or get of one key."""

    op: TxnOpKind
    key: str
    value: str | None = None

    def to_json(self) -> list[object]:
        return [self.op, self.key, self.value] if self.op == "put" else [self.op, self.key]

    @classmethod
    def from_json(cls, item: Any) -> TxnOp:
        op, key = item[0], item[1]
        if op not in TXN_OPS or not isinstance(key, str):
            raise ValueError(f"bad txn operation {item!r}")
        if op == "put":
            (value,) = item[2:]
            if not isinstance(value, str):
                raise TypeError("a put needs a string value")
            return cls("put", key, value)
        if len(item) != 2:
            raise ValueError(f"bad txn operation {item!r}")
        return cls(op, key)


@dataclass(frozen=True, slots=True)
class Txn:
    """Compares, then ``success`` if every compare holds, else ``failure``: one log entry,
    applied atomically at one revision (none when the branch taken writes nothing)."""

    compare: tuple[Compare, ...] = ()
    success: tuple[TxnOp, ...] = ()
    failure: tuple[TxnOp, ...] = ()
    request_id: str | None = None
    stamp: float = 0.0

    needs_protocol = TXN_PROTOCOL_VERSION

    def encode(self) -> bytes:
        obj: dict[str, object] = {
            "op": "txn",
            "c": [c.to_json() for c in self.compare],
            "s": [o.to_json() for o in self.success],
            "f": [o.to_json() for o in self.failure],
        }
        if self.request_id is not None:
            obj["i"] = self.request_id
            obj["t"] = self.stamp
        return compact_json(obj).encode()

    def fingerprint(self) -> bytes:
        return _digest(
            [
                "txn",
                [c.to_json() for c in self.compare],
                [o.to_json() for o in self.success],
                [o.to_json() for o in self.failure],
            ]
        )

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Txn:
        return cls(
            compare=tuple(Compare.from_json(c) for c in obj["c"]),
            success=tuple(TxnOp.from_json(o) for o in obj["s"]),
            failure=tuple(TxnOp.from_json(o) for o in obj["f"]),
            request_id=obj.get("i"),
            stamp=float(obj.get("t", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class FormatUpgrade:
    """Move the store to ``format`` at this log position (a no-op when it is there already)."""

    format: int = REVISIONS_FORMAT
    request_id: str | None = None
    stamp: float = 0.0

    @property
    def needs_protocol(self) -> int:
        if self.format >= LEASE_FORMAT:
            return LEASE_PROTOCOL_VERSION
        return HISTORY_PROTOCOL_VERSION if self.format >= HISTORY_FORMAT else TXN_PROTOCOL_VERSION

    def encode(self) -> bytes:
        return compact_json({"op": "upgrade", "format": self.format}).encode()

    def fingerprint(self) -> bytes:
        return _digest(["upgrade", self.format])


# -- leases ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    """Create lease ``lease`` with a time to live of ``ttl`` seconds. The id is chosen by the
    leader (or the client) before proposing; the expiry is the leader's business, never part
    of the replicated state (``raftnode.kv.lessor``)."""

    lease: int
    ttl: int

    needs_protocol = LEASE_PROTOCOL_VERSION
    request_id = None

    def encode(self) -> bytes:
        return compact_json({"op": "lease_grant", "id": self.lease, "ttl": self.ttl}).encode()

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LeaseGrant:
        ttl = obj["ttl"]
        if type(ttl) is not int or ttl <= 0:
            raise TypeError(f"a lease ttl is a positive integer, got {ttl!r}")
        return cls(_lease_id(obj["id"]), ttl)


@dataclass(frozen=True, slots=True)
class LeaseRevoke:
    """End lease ``lease``: its keys are deleted at one revision. ``expired`` tells that the
    leader proposed it because keep-alives stopped (for logs and metrics only)."""

    lease: int
    expired: bool = False

    needs_protocol = LEASE_PROTOCOL_VERSION
    request_id = None

    def encode(self) -> bytes:
        obj: dict[str, object] = {"op": "lease_revoke", "id": self.lease}
        if self.expired:
            obj["x"] = True
        return compact_json(obj).encode()

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LeaseRevoke:
        return cls(_lease_id(obj["id"]), obj.get("x") is True)


# -- history compaction ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Compact:
    """Drop the history window's changes up to ``revision`` and make it the compact revision
    (etcd's Compact): a watch may then start at ``revision + 1`` at the earliest. Applying it is
    a no-op when the window starts past ``revision`` already, and refused when ``revision`` is
    ahead of the store's (``raftnode.kv.history.compact_history``)."""

    revision: int

    needs_protocol = COMPACT_PROTOCOL_VERSION
    request_id = None

    def encode(self) -> bytes:
        return compact_json({"op": "compact", "rev": self.revision}).encode()

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Compact:
        rev = obj["rev"]
        if type(rev) is not int or not 0 < rev <= MAX_REVISION:
            raise TypeError(f"a compact revision is an integer from 1 to {MAX_REVISION}")
        return cls(rev)


Entry = Command | Txn | FormatUpgrade | LeaseGrant | LeaseRevoke | Compact
"""Anything a key-value log entry holds."""


def decode_entry(data: bytes) -> Entry:
    """The command in a log entry; ``ValueError``/``KeyError``/``TypeError`` when it is none."""
    obj = parse_json(data)
    if not isinstance(obj, dict):
        raise ValueError("an entry is a JSON object")
    op = obj.get("op")
    if op == "txn":
        return Txn.from_json(obj)
    if op == "upgrade":
        fmt = obj["format"]
        if type(fmt) is not int:
            raise TypeError("format must be an integer")
        return FormatUpgrade(fmt)
    if op == "lease_grant":
        return LeaseGrant.from_json(obj)
    if op == "lease_revoke":
        return LeaseRevoke.from_json(obj)
    if op == "compact":
        return Compact.from_json(obj)
    return Command.from_json(obj)


# -- results -----------------------------------------------------------------------------------


class Outcome(StrEnum):
    """``CommandResult.error``: why a command changed nothing (None when it took effect)."""

    CAS_MISMATCH = "cas_mismatch"
    """The key's current value (or absence) did not match ``prev_value``, or its
    ``mod_revision`` did not match ``prev_revision``."""
    NOT_FOUND = "not_found"
    """A delete of a key that does not exist."""
    QUOTA_EXCEEDED = "quota_exceeded"
    """A put refused because the store is at its quota."""
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    """The command's idempotency key already named a different command: nothing applied, and
    the first command's outcome is not disclosed."""
    LEASE_NOT_FOUND = "lease_not_found"
    """A put attached to, or a revoke of, a lease that does not exist (never granted, revoked
    or expired): nothing changed."""
    LEASE_EXISTS = "lease_exists"
    """A grant of a lease id already in use."""
    TOO_MANY_LEASES = "too_many_leases"
    """A grant while the store holds its maximum number of leases."""
    FUTURE_REVISION = "future_revision"
    """A compaction to a revision the store has not reached: nothing changed."""
    NO_HISTORY = "no_history"
    """A compaction of a store that keeps no history window yet (format below 3)."""
    BAD_COMMAND = "bad_command"
    """An entry that does not decode as a command (skipped the same way on every node)."""


@value_type
class KeyRevisions:
    """A key's ``create_revision``, ``mod_revision`` and ``version`` (all 0 when absent;
    ``version`` None while the store does not count versions yet: see ``raftnode.kv.store``)."""

    create_revision: int = 0
    mod_revision: int = 0
    version: int | None = None


@value_type
class CommandResult:
    """What applying a command did: ``ok`` False means a CAS mismatch or an absent key."""

    ok: bool
    revision: int
    prev_value: str | None = None
    current_value: str | None = None
    existed: bool = False
    error: str | None = None
    replayed: bool = False
    """The command's request id had applied before: this is that first outcome, again."""
    key_revisions: KeyRevisions | None = None
    """The key's revisions after the command (a put), or as they are (a mismatch); None on
    stores that do not count versions yet, so that their remembered outcomes stay exactly
    those of the release before (every node must count the same bytes)."""

    def to_json(self) -> str:
        row: list[object] = [
            self.ok,
            self.revision,
            self.prev_value,
            self.current_value,
            self.existed,
            self.error,
        ]
        if self.key_revisions is not None:
            r = self.key_revisions
            row += [r.create_revision, r.mod_revision, r.version]
        return json.dumps(row)

    @classmethod
    def replay_of(cls, text: str) -> CommandResult:
        row = json.loads(text)
        ok, revision, prev, current, existed, error = row[:6]
        revisions = KeyRevisions(*row[6:9]) if len(row) >= 9 else None
        return cls(ok, revision, prev, current, existed, error, True, revisions)


@dataclass(frozen=True, slots=True)
class TxnOpResult:
    """What one operation of the branch taken did: a put (``created``, ``prev_value``), a
    delete (``deleted``, ``prev_value``) or a get (``found``, ``value`` and revisions)."""

    op: TxnOpKind
    key: str
    found: bool = False
    value: str | None = None
    revisions: KeyRevisions = field(default_factory=KeyRevisions)

    def to_json(self) -> list[object]:
        r = self.revisions
        return [
            self.op,
            self.key,
            self.found,
            self.value,
            r.create_revision,
            r.mod_revision,
            r.version,
        ]

    @classmethod
    def from_json(cls, row: list[Any]) -> TxnOpResult:
        op, key, found, value, create, mod, version = row
        return cls(op, key, found, value, KeyRevisions(create, mod, version))


@dataclass(frozen=True, slots=True)
class TxnResult:
    """A transaction's outcome: which branch ran, the revision after it, and each operation's
    result; or ``error`` (quota, idempotency key reused, undecodable) with nothing changed."""

    succeeded: bool
    revision: int
    results: tuple[TxnOpResult, ...] = ()
    error: str | None = None
    replayed: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> str:
        return compact_json(
            {
                "txn": self.succeeded,
                "rev": self.revision,
                "res": [r.to_json() for r in self.results],
                "err": self.error,
            }
        )

    @classmethod
    def replay_of(cls, obj: dict[str, Any]) -> TxnResult:
        return cls(
            obj["txn"],
            obj["rev"],
            tuple(TxnOpResult.from_json(r) for r in obj["res"]),
            obj["err"],
            replayed=True,
        )


@dataclass(frozen=True, slots=True)
class CompactResult:
    """A compaction's outcome: the store's ``revision`` and the window's ``compact_revision``
    after it (``compacted`` False: it already started past the revision asked), or ``error``
    with nothing changed."""

    revision: int
    compact_revision: int
    compacted: bool = False
    error: str | None = None

    replayed = False
    """A compaction carries no idempotency key: never a remembered outcome."""

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> str:
        return compact_json(
            {
                "compact": self.compact_revision,
                "rev": self.revision,
                "done": self.compacted,
                "err": self.error,
            }
        )


ApplyResult = CommandResult | TxnResult | CompactResult


def replay_of(text: str) -> ApplyResult:
    """A remembered outcome, marked replayed (a list: a command's; an object: a txn's)."""
    obj = json.loads(text)
    if isinstance(obj, dict):
        return TxnResult.replay_of(obj)
    return CommandResult.replay_of(text)
