"""Operation records of a chaos run and their JSON lines file.

One record per client operation: who (``process``), what (``kind``, ``key``, ``value``,
``expected`` for a compare-and-set), what came back (``result``), when (``invoke`` and
``complete``, seconds on one monotonic clock) and how it ended (``outcome``):

- ``ok``: it certainly took effect (a read: it returned ``result``);
- ``fail``: it certainly did not take effect (409, a refused connection, a documented 503);
- ``info``: indeterminate: it may take effect at any point after ``invoke``, or never
  (a timeout, a 504, a connection lost after the request was sent).

The nemesis writes its faults and heals into the same history (``process`` ``nemesis``,
``kind`` ``fault`` or ``heal``, ``value`` naming the fault).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Outcome = Literal["ok", "fail", "info"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "fail", "info")
# put/get/cas/delete act on a register per key; add/read_set on a set; txn is a list-append
# transaction (``result``: its micro-operations, see chaos.elle); fault/heal are the nemesis'.
REGISTER_KINDS = frozenset({"put", "get", "cas", "delete"})
SET_KINDS = frozenset({"add", "read_set"})
APPEND_KINDS = frozenset({"txn"})
NEMESIS_KINDS = frozenset({"fault", "heal"})
KINDS = REGISTER_KINDS | SET_KINDS | APPEND_KINDS | NEMESIS_KINDS
NEMESIS_PROCESS = "nemesis"


class HistoryError(ValueError):
    """A history record is malformed; the message names the line and the field."""


@dataclass(frozen=True)
class Operation:
    """One operation as a client (or the nemesis) saw it.

    ``value``: the value written (put, cas, add) or the fault's description.
    ``expected``: a cas' ``prev_value`` (None: the key must be absent).
    ``result``: what a read returned (None: the key was absent); a read_set's list of elements.
    ``complete``: when the answer came, or when the client gave up (an ``info`` operation may
    still take effect after it).
    ``consistency``: a read's consistency (linearizable, lease, stale).
    """

    process: str
    kind: str
    invoke: float
    complete: float
    outcome: Outcome
    key: str | None = None
    value: str | None = None
    expected: str | None = None
    result: Any = None
    consistency: str | None = None
    endpoint: str | None = None
    note: str = ""
    index: int = field(default=-1, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise HistoryError(f"unknown kind {self.kind!r} (one of {sorted(KINDS)})")
        if self.outcome not in OUTCOMES:
            raise HistoryError(f"unknown outcome {self.outcome!r} (one of {OUTCOMES})")
        if self.complete < self.invoke:
            raise HistoryError(
                f"{self.kind} by {self.process}: completes at {self.complete} before its "
                f"invoke at {self.invoke}"
            )
        if self.kind in REGISTER_KINDS and self.key is None:
            raise HistoryError(f"{self.kind} by {self.process} has no key")

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        del record["index"]
        return {name: value for name, value in record.items() if value not in (None, "")} | {
            # Present even when None: "the key was absent" / "must be absent" are answers.
            **({"result": self.result} if self.kind in {"get", "read_set"} else {}),
            **({"expected": self.expected} if self.kind == "cas" else {}),
        }

    @property
    def is_nemesis(self) -> bool:
        return self.kind in NEMESIS_KINDS


_FIELDS = {
    "process",
    "kind",
    "invoke",
    "complete",
    "outcome",
    "key",
    "value",
    "expected",
    "result",
    "consistency",
    "endpoint",
    "note",
}


def operation_from_json(record: dict[str, Any], where: str = "record") -> Operation:
    """An Operation from one decoded JSON object; HistoryError names what is wrong."""
    if not isinstance(record, dict):
        raise HistoryError(f"{where}: not a JSON object")
    unknown = set(record) - _FIELDS
    if unknown:
        raise HistoryError(f"{where}: unknown field(s) {sorted(unknown)}")
    for name in ("process", "kind", "invoke", "complete", "outcome"):
        if name not in record:
            raise HistoryError(f"{where}: missing field {name!r}")
    for name in ("invoke", "complete"):
        if not isinstance(record[name], int | float) or isinstance(record[name], bool):
            raise HistoryError(f"{where}: {name} must be a number, not {record[name]!r}")
    try:
        return Operation(**{**record, "process": str(record["process"])})
    except HistoryError as e:
        raise HistoryError(f"{where}: {e}") from None


def write_history(path: Path, operations: Iterable[Operation]) -> int:
    """Write one JSON object per line; returns how many."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for op in operations:
            out.write(json.dumps(op.to_json(), sort_keys=True) + "\n")
            count += 1
    return count


def read_history(path: Path) -> list[Operation]:
    """The operations of a JSON lines file, numbered in file order (``index``)."""
    return list(_read(path))


def _read(path: Path) -> Iterator[Operation]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise HistoryError(f"{where}: not JSON ({e.msg})") from None
            op = operation_from_json(record, where)
            yield _numbered(op, number - 1)


def _numbered(op: Operation, index: int) -> Operation:
    return Operation(**{**asdict(op), "index": index})


def numbered(operations: Iterable[Operation]) -> list[Operation]:
    """The operations with ``index`` set to their position (for reports that name them)."""
    return [_numbered(op, i) for i, op in enumerate(operations)]
