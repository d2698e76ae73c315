"""Commands of the key-value state machine, as carried in log entries (compact JSON).

A command is validated when the client request arrives, encoded once, replicated, and decoded
on every node when its entry applies. ``prev_value`` is compare-and-set: the command only takes
effect when the key's current value equals it (``None`` with ``cas`` set means "must be absent").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Op = Literal["put", "delete"]


@dataclass(frozen=True, slots=True)
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

    def encode(self) -> bytes:
        obj: dict[str, object] = {"op": self.op, "k": self.key}
        if self.op == "put":
            obj["v"] = self.value
        if self.cas:
            obj["p"] = self.prev_value
        if self.request_id is not None:
            obj["i"] = self.request_id
            obj["t"] = self.stamp
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    def fingerprint(self) -> bytes:
        """A digest of what the command does (not who sent it or when): the same idempotency
        key arriving with a different command is refused instead of answered with the first
        command's outcome."""
        what = [self.op, self.key, self.value, self.cas, self.prev_value]
        text = json.dumps(what, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:16]

    @classmethod
    def decode(cls, data: bytes) -> Command:
        obj = json.loads(data)
        op = obj["op"]
        if op not in ("put", "delete"):
            raise ValueError(f"unknown op {op!r}")
        return cls(
            op=op,
            key=obj["k"],
            value=obj.get("v"),
            cas="p" in obj,
            prev_value=obj.get("p"),
            request_id=obj.get("i"),
            stamp=float(obj.get("t", 0.0)),
        )


class Outcome(StrEnum):
    """``CommandResult.error``: why a command changed nothing (None when it took effect)."""

    CAS_MISMATCH = "cas_mismatch"
    """The key's current value (or absence) did not match ``prev_value``."""
    NOT_FOUND = "not_found"
    """A delete of a key that does not exist."""
    QUOTA_EXCEEDED = "quota_exceeded"
    """A put refused because the store is at its quota."""
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    """The command's idempotency key already named a different command: nothing applied, and
    the first command's outcome is not disclosed."""
    BAD_COMMAND = "bad_command"
    """An entry that does not decode as a command (skipped the same way on every node)."""


@dataclass(frozen=True, slots=True)
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

    def to_json(self) -> str:
        return json.dumps(
            [self.ok, self.revision, self.prev_value, self.current_value, self.existed, self.error]
        )

    @classmethod
    def replay_of(cls, text: str) -> CommandResult:
        ok, revision, prev, current, existed, error = json.loads(text)
        return cls(ok, revision, prev, current, existed, error, replayed=True)
