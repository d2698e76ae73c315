"""The set workload's check: every acknowledged add is in the final read, exactly once.

Clients add unique elements (``add``, ``value`` = the element); at the end one ``read_set``
operation (``result`` = the list of elements found) reads the set back. Against that read:

- lost: acknowledged (``ok``) adds missing from it;
- duplicated: elements present more than once;
- unexpected: elements nobody tried to add, or whose add certainly failed (``fail``);
- recovered: indeterminate (``info``) adds that took effect after all (allowed, counted).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .history import Operation


class SetCheckError(ValueError):
    """The history cannot be checked (no final read), with what is missing."""


@dataclass(frozen=True)
class SetResult:
    key: str | None
    acknowledged: int
    indeterminate: int
    failed: int
    final_size: int
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    recovered: int = 0

    @property
    def valid(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected)


def check_set(operations: Iterable[Operation], key: str | None = None) -> SetResult:
    """Check the adds of one set (``key``; None: the only set in the history)."""
    ops = [op for op in operations if op.kind in {"add", "read_set"} and key in (None, op.key)]
    reads = [op for op in ops if op.kind == "read_set" and op.outcome == "ok"]
    if not reads:
        raise SetCheckError(f"set {key!r}: no successful final read_set in the history")
    final = max(reads, key=lambda op: op.complete)
    if not isinstance(final.result, list):
        raise SetCheckError(f"set {key!r}: the final read_set's result is not a list")
    found = Counter(str(element) for element in final.result)
    adds = [op for op in ops if op.kind == "add"]
    by_outcome: dict[str, set[str]] = {"ok": set(), "fail": set(), "info": set()}
    for op in adds:
        by_outcome[op.outcome].add(str(op.value))
    # An element retried with one idempotency key has several records: the best outcome counts.
    acknowledged = by_outcome["ok"]
    indeterminate = by_outcome["info"] - acknowledged
    failed = by_outcome["fail"] - acknowledged - indeterminate
    return SetResult(
        key=key if key is not None else final.key,
        acknowledged=len(acknowledged),
        indeterminate=len(indeterminate),
        failed=len(failed),
        final_size=len(found),
        lost=sorted(acknowledged - set(found)),
        duplicated=sorted(element for element, n in found.items() if n > 1),
        unexpected=sorted(set(found) - acknowledged - indeterminate),
        recovered=len(indeterminate & set(found)),
    )
