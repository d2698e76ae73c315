"""Commands of the key-value state machine, as carried in log entries (compact JSON).

A command is validated when the client request arrives, encoded once, replicated, and decoded
on every node when its entry applies. ``prev_value`` is compare-and-set: the command only takes
effect when the key's current value equals it (``None`` with ``cas`` set means "must be absent").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

Op = Literal["put", "delete"]


@dataclass(frozen=True, slots=True)
class Command:
    op: Op
    key: str
    value: str | None = None
    cas: bool = False
    prev_value: str | None = None

    def encode(self) -> bytes:
        obj: dict[str, object] = {"op": self.op, "k": self.key}
        if self.op == "put":
            obj["v"] = self.value
        if self.cas:
            obj["p"] = self.prev_value
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

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
        )


QUOTA_EXCEEDED = "quota_exceeded"
"""``CommandResult.error`` of a put refused because the store is at its quota."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What applying a command did: ``ok`` False means a CAS mismatch or an absent key."""

    ok: bool
    revision: int
    prev_value: str | None = None
    current_value: str | None = None
    existed: bool = False
    error: str | None = None
