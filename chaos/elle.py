"""The list-append workload's check: Elle's approach (Kingsbury and Alvaro, VLDB 2020).

Every value is a list that only ever grows by appends of unique elements, so a read names the
whole order of the writes it saw. From the history's ``txn`` operations (``result`` = the
micro-operations ``["r", key, list]`` and ``["append", key, element]``):

1. The version order of each key is the longest list read; every other read must be a prefix
   of it, else the key has an ``incompatible-order`` (two timelines: a lost or forked write).
2. Dependencies between committed transactions (``ok`` ones, and ``info`` ones whose appends
   were read: those certainly took effect): ``ww`` (T1 appended the element just before T2's
   in a key's order), ``wr`` (T2 read a list whose last element T1 appended), ``rw`` (T1 read
   a list that T2's element extends: an anti-dependency). With ``realtime``, ``rt`` too: T1
   completed before T2 was invoked, as strict serializability demands (a stale read then
   closes a cycle).
3. Cycles: Tarjan's strongly connected components, then in each the least anomalous cycle
   found: ``G0`` (ww only), ``G1c`` (ww and wr), ``G-single`` (exactly one rw), ``G2`` (more);
   with a ``-realtime`` suffix when the cycle needs an rt edge.

Besides cycles: ``G1a`` (a read saw the element of a failed transaction), ``G1b`` (a read
ended at an element its transaction appended before another to the same key), ``internal``
(a read inside a transaction missing that transaction's own appends), ``duplicate-elements``
(an element twice in one list: a write applied twice), ``garbage-read`` (an element nobody
appended), ``lost-append`` (acknowledged before the key's final read began, absent from it).
An indeterminate append read late, or never, is not an anomaly.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .history import Operation

EDGE_PREFERENCE = ("ww", "wr", "rt", "rw")  # the label a cycle's step is given, first fits
CYCLE_KINDS = ("G0", "G1c", "G-single", "G2")
# G-single search: at most this many rw edges tried per component (a bound, not a guess: a
# component that exhausts it is still reported, as G2, with a cycle found by plain search).
MAX_RW_TRIES = 2000

MicroOp = tuple[str, str, Any]


class ElleCheckError(ValueError):
    """The history cannot be checked (a malformed txn record, an element appended twice)."""


@dataclass(frozen=True)
class Anomaly:
    """``ops``: the history indices (``Operation.index``) of the transactions involved;
    ``cycle``: for a cycle, its steps as ``[index, edge, index]``."""

    kind: str
    detail: str
    ops: tuple[int, ...] = ()
    cycle: tuple[tuple[int, str, int], ...] = ()


@dataclass(frozen=True)
class ElleResult:
    txns: int
    committed: int
    keys: int
    recovered: int  # indeterminate transactions whose appends were read
    anomalies: list[Anomaly] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.anomalies

    def by_kind(self) -> dict[str, int]:
        return dict(sorted(Counter(a.kind for a in self.anomalies).items()))


@dataclass(frozen=True)
class _Txn:
    op: Operation
    mops: tuple[MicroOp, ...]


def _micro_ops(op: Operation) -> tuple[MicroOp, ...]:
    where = f"txn #{op.index} by {op.process}"
    if not isinstance(op.result, list):
        raise ElleCheckError(f"{where}: result must be the list of micro-operations")
    mops: list[MicroOp] = []
    for mop in op.result:
        if not (isinstance(mop, list | tuple) and len(mop) == 3 and isinstance(mop[1], str)):
            raise ElleCheckError(f"{where}: {mop!r} is not [f, key, value]")
        f, key, value = mop
        if f == "append":
            if not isinstance(value, str):
                raise ElleCheckError(f"{where}: append {key!r} needs a string element")
        elif f == "r":
            if value is not None and not (
                isinstance(value, list) and all(isinstance(e, str) for e in value)
            ):
                raise ElleCheckError(f"{where}: read {key!r} must be a list of strings or null")
            if value is None and op.outcome == "ok":
                raise ElleCheckError(f"{where}: an ok transaction's read of {key!r} is null")
        else:
            raise ElleCheckError(f"{where}: unknown micro-operation {f!r} (r or append)")
        mops.append((f, key, value))
    return tuple(mops)


class _Graph:
    """Transactions 0..n-1 and, for real time, one node per completion after them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.out: list[dict[int, set[str]]] = [{} for _ in range(size)]

    def add_node(self) -> int:
        self.out.append({})
        self.size += 1
        return self.size - 1

    def add(self, a: int, b: int, kind: str) -> None:
        if a != b:
            self.out[a].setdefault(b, set()).add(kind)

    def successors(self, a: int, allowed: frozenset[str], within: set[int]) -> Iterable[int]:
        for b, kinds in self.out[a].items():
            if b in within and kinds & allowed:
                yield b


def _components(graph: _Graph, allowed: frozenset[str], within: set[int]) -> list[set[int]]:
    """Tarjan's strongly connected components (iterative), those of more than one node."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    found: list[set[int]] = []
    counter = 0
    for root in sorted(within):
        if root in index:
            continue
        work = [(root, iter(list(graph.successors(root, allowed, within))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(list(graph.successors(nxt, allowed, within)))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def _path(
    graph: _Graph, start: int, goal: int, allowed: frozenset[str], within: set[int]
) -> list[int] | None:
    """A shortest path start ->* goal (breadth first), or None."""
    parent: dict[int, int] = {start: start}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            path = [node]
            while node != start:
                node = parent[node]
                path.append(node)
            return path[::-1]
        for nxt in graph.successors(node, allowed, within):
            if nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    return None


def _shortest_cycle(graph: _Graph, component: set[int], allowed: frozenset[str]) -> list[int]:
    start = min(component)
    best: list[int] | None = None
    for nxt in graph.successors(start, allowed, component):
        path = _path(graph, nxt, start, allowed, component)
        if path is not None and (best is None or len(path) < len(best) - 1):
            best = [start, *path]
    assert best is not None, "a strongly connected component always holds a cycle"
    return best


def _cycle_in(graph: _Graph, component: set[int], rt: bool) -> list[int]:
    """The least anomalous cycle in ``component``: ww only, then ww+wr, then one rw, then any."""
    extra = {"rt"} if rt else set()
    for kinds in ({"ww"}, {"ww", "wr"}):
        allowed = frozenset(kinds | extra)
        inner = _components(graph, allowed, component)
        if inner:
            return _shortest_cycle(graph, min(inner, key=len), allowed)
    no_rw = frozenset({"ww", "wr"} | extra)
    best: list[int] | None = None
    tries = 0
    for a in sorted(component):
        for b, kinds in graph.out[a].items():
            if b not in component or "rw" not in kinds or tries >= MAX_RW_TRIES:
                continue
            tries += 1
            path = _path(graph, b, a, no_rw, component)
            if path is not None and (best is None or len(path) + 1 < len(best)):
                best = [a, *path]
    if best is not None:
        return best
    return _shortest_cycle(graph, component, frozenset({"ww", "wr", "rw"} | extra))


class _Checker:
    def __init__(self, operations: Iterable[Operation], realtime: bool) -> None:
        self.realtime = realtime
        self.txns = [_Txn(op, _micro_ops(op)) for op in operations if op.kind == "txn"]
        self.anomalies: list[Anomaly] = []
        self.writer: dict[tuple[str, str], int] = {}
        for t, txn in enumerate(self.txns):
            for f, key, value in txn.mops:
                if f != "append":
                    continue
                if (key, value) in self.writer:
                    other = self.txns[self.writer[(key, value)]].op.index
                    raise ElleCheckError(
                        f"element {value!r} of {key!r} appended by txns #{other} and "
                        f"#{txn.op.index}: elements must be unique (retries are one record)"
                    )
                self.writer[(key, value)] = t
        # External reads: a key's read before the transaction's own appends to it.
        self.reads: list[tuple[int, str, list[str]]] = []
        for t, txn in enumerate(self.txns):
            if txn.op.outcome == "ok":
                self._collect_reads(t, txn)

    def _collect_reads(self, t: int, txn: _Txn) -> None:
        own: dict[str, list[str]] = {}
        for f, key, value in txn.mops:
            if f == "append":
                own.setdefault(key, []).append(value)
            elif key in own:
                mine = own[key]
                if value[len(value) - len(mine) :] != mine:
                    self._report(
                        "internal",
                        f"{key!r}: read {value} inside the txn misses its own appends {mine}",
                        [t],
                    )
            else:
                self.reads.append((t, key, value))

    def _report(
        self, kind: str, detail: str, txns: Sequence[int], cycle: Sequence[Any] = ()
    ) -> None:
        self.anomalies.append(
            Anomaly(kind, detail, tuple(self.txns[t].op.index for t in txns), tuple(cycle))
        )

    def run(self) -> ElleResult:
        observed: set[int] = set()
        for t, key, value in self.reads:
            self._check_read(t, key, value, observed)
        committed = {t for t, txn in enumerate(self.txns) if txn.op.outcome == "ok"}
        recovered = {t for t in observed if self.txns[t].op.outcome == "info"}
        committed |= recovered
        orders = self._version_orders()
        self._lost(orders)
        graph = self._dependencies(orders, committed)
        self._cycles(graph, committed)
        return ElleResult(
            txns=len(self.txns),
            committed=len(committed),
            keys=len({key for _, key, _ in self.reads} | {k for k, _ in self.writer}),
            recovered=len(recovered),
            anomalies=self.anomalies,
        )

    def _check_read(self, t: int, key: str, value: list[str], observed: set[int]) -> None:
        twice = sorted(e for e, n in Counter(value).items() if n > 1)
        if twice:
            self._report("duplicate-elements", f"{key!r}: {twice} more than once in {value}", [t])
        for element in dict.fromkeys(value):
            w = self.writer.get((key, element))
            if w is None:
                self._report("garbage-read", f"{key!r}: {element!r} was never appended", [t])
                continue
            observed.add(w)
            if self.txns[w].op.outcome == "fail":
                self._report("G1a", f"{key!r}: read {element!r} of a failed txn", [t, w])
        if value:
            w = self.writer.get((key, value[-1]))
            if w is not None and w != t:
                mine = [v for f, k, v in self.txns[w].mops if f == "append" and k == key]
                if mine[-1] != value[-1]:
                    self._report(
                        "G1b",
                        f"{key!r}: read ends at {value[-1]!r}, an intermediate append "
                        f"(the txn appended {mine})",
                        [t, w],
                    )

    def _version_orders(self) -> dict[str, list[str]]:
        """Each key's longest read, for the keys whose reads are all prefixes of it."""
        longest: dict[str, list[str]] = {}
        for _, key, value in self.reads:
            if len(value) > len(longest.get(key, [])):
                longest[key] = value
        orders = dict(longest)
        for t, key, value in self.reads:
            if key in orders and value != longest[key][: len(value)]:
                self._report(
                    "incompatible-order",
                    f"{key!r}: read {value} is not a prefix of {longest[key]}",
                    [t],
                )
                del orders[key]
        return orders

    def _lost(self, orders: dict[str, list[str]]) -> None:
        final: dict[str, tuple[int, list[str]]] = {}
        for t, key, value in self.reads:
            done = self.txns[t].op.complete
            if key not in final or done > self.txns[final[key][0]].op.complete:
                final[key] = (t, value)
        for (key, element), w in self.writer.items():
            if key not in final or self.txns[w].op.outcome != "ok":
                continue
            reader, value = final[key]
            if self.txns[w].op.complete < self.txns[reader].op.invoke and element not in value:
                self._report(
                    "lost-append",
                    f"{key!r}: {element!r} acknowledged, absent from the final read",
                    [w, reader],
                )

    def _dependencies(self, orders: dict[str, list[str]], committed: set[int]) -> _Graph:
        graph = _Graph(len(self.txns))

        def writer(key: str, element: str) -> int | None:
            w = self.writer.get((key, element))
            return w if w in committed else None

        for key, order in orders.items():
            for before, after in itertools.pairwise(order):
                a, b = writer(key, before), writer(key, after)
                if a is not None and b is not None:
                    graph.add(a, b, "ww")
        for t, key, value in self.reads:
            if value:
                w = writer(key, value[-1])
                if w is not None:
                    graph.add(w, t, "wr")
            known = orders.get(key)
            if known is not None and len(value) < len(known):
                w = writer(key, known[len(value)])
                if w is not None:
                    graph.add(t, w, "rw")
        if self.realtime:
            self._realtime(graph, committed)
        return graph

    def _realtime(self, graph: _Graph, committed: set[int]) -> None:
        """T1 -> T2 when T1 completed before T2's invoke, in O(n) edges: a chain of completion
        nodes (T1 -> its completion -> the next completion ...), each T2 hanging from the last
        completion before its invoke. An indeterminate txn never completes (no edge out)."""
        done = sorted(
            (self.txns[t].op.complete, t) for t in committed if self.txns[t].op.outcome == "ok"
        )
        times = [c for c, _ in done]
        nodes = [graph.add_node() for _ in done]
        for i, (_, t) in enumerate(done):
            graph.add(t, nodes[i], "rt")
            if i:
                graph.add(nodes[i - 1], nodes[i], "rt")
        for t in committed:
            j = bisect.bisect_left(times, self.txns[t].op.invoke) - 1
            if j >= 0:
                graph.add(nodes[j], t, "rt")

    def _cycles(self, graph: _Graph, committed: set[int]) -> None:
        explained: set[int] = set()
        for component in _components(graph, frozenset({"ww", "wr", "rw"}), committed):
            self._report_cycle(graph, _cycle_in(graph, component, rt=False))
            explained |= component
        if not self.realtime:
            return
        everything = committed | set(range(len(self.txns), graph.size))
        kinds = frozenset({"ww", "wr", "rw", "rt"})
        for component in _components(graph, kinds, everything):
            if component & explained:
                continue
            self._report_cycle(graph, _cycle_in(graph, component, rt=True))

    def _report_cycle(self, graph: _Graph, nodes: list[int]) -> None:
        """``nodes``: a cycle [a, b, ..., a]; completion nodes fold into one rt step."""
        steps: list[tuple[int, str, int]] = []
        source: int | None = None
        for a, b in itertools.pairwise(nodes):
            kinds = graph.out[a][b]
            label = next(k for k in EDGE_PREFERENCE if k in kinds)
            if a < len(self.txns):
                source = a
            if b < len(self.txns):
                assert source is not None
                steps.append((source, "rt" if a >= len(self.txns) else label, b))
        rw = sum(1 for _, label, _ in steps if label == "rw")
        base = (
            "G0"
            if all(label in ("ww", "rt") for _, label, _ in steps)
            else "G1c"
            if rw == 0
            else "G-single"
            if rw == 1
            else "G2"
        )
        kind = base + ("-realtime" if any(label == "rt" for _, label, _ in steps) else "")
        ops = [t for t, _, _ in steps]
        cycle = [(self.txns[a].op.index, label, self.txns[b].op.index) for a, label, b in steps]
        text = " ".join(f"#{a} -{label}-> " for a, label, _ in cycle) + f"#{cycle[0][0]}"
        self._report(kind, f"cycle {text}", ops, cycle)


def check_list_append(operations: Iterable[Operation], realtime: bool = True) -> ElleResult:
    """Check the ``txn`` operations of a history (see the module's docstring).
    ``realtime``: add real-time edges (strict serializability); False: serializability."""
    return _Checker(operations, realtime).run()
