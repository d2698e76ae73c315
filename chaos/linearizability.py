"""Linearizability of a register history: Wing-Gong/Lowe search with memoization, per key.

This is Porcupine's algorithm (Athalye, after Lowe's "Testing for linearizability", 2016): the
operations of one key become call and return entries on a doubly linked list ordered by time.
The search walks the list; at a call it tries to linearize that operation now (the model
accepts it in the current state), lifts its call and return out of the list and goes on, unless
the pair (set of linearized operations, register state) was seen before; at a return whose call
is still in the list, no order works from here, so it backtracks. A history is linearizable when
the list empties. Linearizability is local (Herlihy and Wing), so each key is checked alone.

The model is one register per key, absent at first (``None``):

- ``put v`` and ``delete`` always apply;
- ``get`` returns the current value (``None``: absent);
- ``cas expected -> v`` applies when the current value equals ``expected`` (a 409 is recorded
  as ``fail``: it did nothing).

Indeterminate (``info``) operations may take effect at any point after their invoke, or never:
their return is at infinity, and a ``cas`` whose outcome is unknown applies if it matches and
leaves the register alone if not. Taking effect at the very end is the same as never, so the
search needs nothing else. Failed operations and indeterminate reads constrain nothing and are
left out. So is an indeterminate write whose value nobody ever observed: if it took effect, no
operation needed its value, so the same order without it is valid too.

A search that runs out of its step budget says so (``linearizable`` is None): it never guesses.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from .history import REGISTER_KINDS, Operation

LINEARIZABLE_READS = frozenset({None, "linearizable"})
DEFAULT_STEP_BUDGET = 2_000_000


@dataclass
class _Entry:
    """A call or a return on the search list."""

    op_id: int
    is_call: bool
    time: float
    match: _Entry | None = None  # a call's return entry
    prev: _Entry | None = None
    next: _Entry | None = None


@dataclass(frozen=True)
class KeyResult:
    """The verdict for one key: True, False, or None when the budget ran out."""

    key: str
    linearizable: bool | None
    operations: int
    steps: int
    seconds: float
    # For a non-linearizable key: a small sub-history that is already not linearizable.
    witness: tuple[Operation, ...] = ()


@dataclass(frozen=True)
class CheckResult:
    keys: tuple[KeyResult, ...] = field(default_factory=tuple)

    @property
    def anomalies(self) -> list[KeyResult]:
        return [k for k in self.keys if k.linearizable is False]

    @property
    def unknown(self) -> list[KeyResult]:
        return [k for k in self.keys if k.linearizable is None]

    @property
    def valid(self) -> bool | None:
        if self.anomalies:
            return False
        return None if self.unknown else True


def _step(state: str | None, op: Operation) -> tuple[bool, str | None]:
    """(does the model accept ``op`` in ``state``, the state after it)."""
    kind = op.kind
    if kind == "put":
        return True, op.value
    if kind == "delete":
        return True, None
    if kind == "get":
        return state == op.result, state
    if kind == "cas":
        if op.outcome == "info":
            return True, (op.value if state == op.expected else state)
        return state == op.expected, op.value
    raise ValueError(f"not a register operation: {kind}")


def _observed_values(ops: Iterable[Operation]) -> set[str | None]:
    seen: set[str | None] = set()
    for op in ops:
        if op.outcome != "ok":
            continue
        if op.kind == "get":
            seen.add(op.result)
        elif op.kind == "cas":
            seen.add(op.expected)
    return seen


def relevant(
    ops: Iterable[Operation], read_consistencies: frozenset[str | None] = LINEARIZABLE_READS
) -> list[Operation]:
    """The operations that constrain the register (see the module docstring)."""
    kept = [
        op
        for op in ops
        if op.kind in REGISTER_KINDS
        and op.outcome != "fail"
        and not (
            op.kind == "get" and (op.outcome != "ok" or op.consistency not in read_consistencies)
        )
    ]
    observed = _observed_values(kept)
    return [
        op
        for op in kept
        if not (op.outcome == "info" and op.kind in {"put", "cas"} and op.value not in observed)
    ]


def _build_list(ops: Sequence[Operation]) -> _Entry:
    entries: list[_Entry] = []
    for i, op in enumerate(ops):
        call = _Entry(i, True, op.invoke)
        ret = _Entry(i, False, math.inf if op.outcome == "info" else op.complete)
        call.match = ret
        entries += (call, ret)
    # At equal times calls go first: the operations overlap, which only allows more orders.
    entries.sort(key=lambda e: (e.time, not e.is_call, e.op_id))
    head = _Entry(-1, False, -math.inf)
    prev = head
    for entry in entries:
        prev.next, entry.prev = entry, prev
        prev = entry
    return head


def _lift(entry: _Entry) -> None:
    assert entry.prev is not None and entry.match is not None and entry.match.prev is not None
    entry.prev.next = entry.next
    if entry.next is not None:
        entry.next.prev = entry.prev
    match = entry.match
    match.prev.next = match.next  # type: ignore[union-attr]
    if match.next is not None:
        match.next.prev = match.prev


def _unlift(entry: _Entry) -> None:
    match = entry.match
    assert match is not None and match.prev is not None and entry.prev is not None
    match.prev.next = match
    if match.next is not None:
        match.next.prev = match
    entry.prev.next = entry
    if entry.next is not None:
        entry.next.prev = entry


def search(
    ops: Sequence[Operation], initial: str | None = None, budget: int = DEFAULT_STEP_BUDGET
) -> tuple[bool | None, int]:
    """(linearizable?, steps taken) for the operations of one key; None: budget exhausted."""
    head = _build_list(ops)
    state = initial
    linearized = 0
    cache: set[tuple[int, str | None]] = set()
    calls: list[tuple[_Entry, str | None]] = []
    entry = head.next
    steps = 0
    while head.next is not None:
        steps += 1
        if steps > budget:
            return None, steps
        assert entry is not None
        if entry.is_call:
            ok, new_state = _step(state, ops[entry.op_id])
            if ok:
                new_linearized = linearized | (1 << entry.op_id)
                if (new_linearized, new_state) not in cache:
                    cache.add((new_linearized, new_state))
                    calls.append((entry, state))
                    state, linearized = new_state, new_linearized
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            if not calls:
                return False, steps
            top, state = calls.pop()
            linearized &= ~(1 << top.op_id)
            _unlift(top)
            entry = top.next
    return True, steps


def _prefix(ops: Sequence[Operation], cut: float) -> list[Operation]:
    """The operations invoked by ``cut``; those still running at ``cut`` become indeterminate.

    Sound for minimizing: a linearizable history has linearizable prefixes of this kind (the
    operations ordered before ``cut`` are all kept, the rest may happen late or never).
    """
    kept: list[Operation] = []
    for op in ops:
        if op.invoke > cut:
            continue
        if op.complete > cut and op.outcome == "ok":
            if op.kind == "get":
                continue
            op = replace(op, outcome="info")
        kept.append(op)
    return relevant(kept, frozenset({op.consistency for op in kept}))


def _removal_groups(ops: Sequence[Operation]) -> list[list[int]]:
    """Sets of operations whose removal keeps a linearizable history linearizable.

    A read alone; a write of a value together with every operation that observed that value
    (values are unique per write in the workloads, and this is only used when they are); a
    delete together with every operation that observed the key absent. An observer that is a
    cas also wrote a value, so its observers join the group too (transitively).
    """
    groups: list[list[int]] = [[i] for i, op in enumerate(ops) if op.kind == "get"]
    observers: dict[str | None, list[int]] = defaultdict(list)
    for j, other in enumerate(ops):
        if other.kind == "get":
            observers[other.result].append(j)
        elif other.kind == "cas":
            observers[other.expected].append(j)

    def closed(first: int, observed: str | None) -> list[int]:
        # A cas that observed the value is also a write: its own observers go with it.
        members, pending = {first}, [observed]
        while pending:
            for j in observers.get(pending.pop(), []):
                if j not in members:
                    members.add(j)
                    if ops[j].kind == "cas":
                        pending.append(ops[j].value)
        return sorted(members)

    for i, op in enumerate(ops):
        if op.kind in {"put", "cas"} and op.value is not None:
            groups.append(closed(i, op.value))
        elif op.kind == "delete":  # with every observer of "absent", for the same reason
            groups.append(closed(i, None))
    return groups


def _unique_writes(ops: Sequence[Operation]) -> bool:
    values = [op.value for op in ops if op.kind in {"put", "cas"}]
    return len(values) == len(set(values)) and None not in values


def minimize(
    ops: Sequence[Operation], initial: str | None = None, seconds: float = 10.0
) -> list[Operation]:
    """A small sub-history of a non-linearizable key history that is still not linearizable.

    First the shortest failing prefix (binary search on completion times), then removal of
    reads and of writes with their observers, in chunks that halve (ddmin), while the rest
    still fails. Bounded in time:
    what is left when time runs out is still a failing sub-history.
    """
    deadline = time.monotonic() + seconds
    consistencies = frozenset({op.consistency for op in ops})
    cuts = sorted({op.complete for op in ops if op.outcome == "ok"})
    low, high = 0, len(cuts) - 1
    best = list(ops)
    while low <= high and time.monotonic() < deadline:
        middle = (low + high) // 2
        candidate = _prefix(ops, cuts[middle])
        if search(candidate, initial, budget=200_000)[0] is False:
            best, high = candidate, middle - 1
        else:
            low = middle + 1
    if not _unique_writes(best):
        return sorted(best, key=lambda op: op.invoke)
    # ddmin over the removal groups: drop big chunks first, halve the chunk when none goes.
    chunk = max(len(best) // 2, 1)
    while time.monotonic() < deadline:
        groups = sorted(_removal_groups(best), key=lambda g: min(best[i].invoke for i in g))
        progressed = False
        for start in range(0, len(groups), chunk):
            if time.monotonic() >= deadline:
                break
            drop = {i for group in groups[start : start + chunk] for i in group}
            candidate = relevant([op for i, op in enumerate(best) if i not in drop], consistencies)
            if candidate and search(candidate, initial, budget=200_000)[0] is False:
                best, progressed = candidate, True
                break
        if not progressed:
            if chunk == 1:
                break
            chunk = max(chunk // 2, 1)
    return sorted(best, key=lambda op: op.invoke)


def check_key(
    key: str,
    ops: Sequence[Operation],
    read_consistencies: frozenset[str | None] = LINEARIZABLE_READS,
    budget: int = DEFAULT_STEP_BUDGET,
    minimize_seconds: float = 10.0,
) -> KeyResult:
    started = time.monotonic()
    kept = relevant(ops, read_consistencies)
    verdict, steps = search(kept, None, budget)
    witness: tuple[Operation, ...] = ()
    seconds = time.monotonic() - started
    if verdict is False:
        witness = tuple(minimize(kept, None, minimize_seconds))
    return KeyResult(key, verdict, len(kept), steps, seconds, witness)


def check(
    operations: Iterable[Operation],
    read_consistencies: frozenset[str | None] = LINEARIZABLE_READS,
    budget: int = DEFAULT_STEP_BUDGET,
    minimize_seconds: float = 10.0,
) -> CheckResult:
    """Check every key's register operations; reads of other consistencies are ignored."""
    by_key: dict[str, list[Operation]] = defaultdict(list)
    for op in operations:
        if op.kind in REGISTER_KINDS and op.key is not None:
            by_key[op.key].append(op)
    return CheckResult(
        tuple(
            check_key(key, ops, read_consistencies, budget, minimize_seconds)
            for key, ops in sorted(by_key.items())
        )
    )
