"""Checks for reads that promise less than linearizability (``consistency=stale``, and lease
reads when their clock assumption is not trusted).

A stale read may be old, but it must (1) return a value somebody tried to write (or absent,
before any write) and (2) not go back in time on one connection: a process that read a key at
modification revision r from one node never later reads that key there at a revision below r
(another node may lag more: that is allowed). A balancer (the VIP) sends each read to whichever
ready node it picks, so reads through it are checked for (1) only: a stale read promises the
state of the node that answers, however far behind (docs/client.md). A node the nemesis wiped
and added back (a ``wiped=URL`` token in a nemesis record's note) starts its history over: from
that record on, its reads are compared only with each other. Revisions come from the
``X-Raftnode-Revision`` answer header, recorded by the workload in ``note`` as ``rev=N``; reads
without one are checked for (1) only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .history import NEMESIS_PROCESS, Operation


@dataclass(frozen=True)
class StaleReadAnomaly:
    kind: str  # "never-written" or "went-back"
    operation: Operation
    detail: str


def revision_of(op: Operation) -> int | None:
    for part in op.note.split():
        if part.startswith("rev="):
            try:
                return int(part[4:])
            except ValueError:
                return None
    return None


def wiped_endpoints(op: Operation) -> list[str]:
    """The endpoints a nemesis record says it wiped (``wiped=URL`` in its note)."""
    return [part[6:] for part in op.note.split() if part.startswith("wiped=")]


def check_stale_reads(
    operations: Iterable[Operation],
    consistencies: frozenset[str] = frozenset({"stale"}),
    balancers: frozenset[str] = frozenset(),
) -> list[StaleReadAnomaly]:
    """The anomalies among the reads of ``consistencies``; reads through an endpoint in
    ``balancers`` are checked only for values never written."""
    ops = sorted(operations, key=lambda op: op.invoke)
    written = {
        (op.key, op.value) for op in ops if op.kind in {"put", "cas"} and op.outcome != "fail"
    }
    anomalies: list[StaleReadAnomaly] = []
    last_seen: dict[tuple[str, str | None, str | None], tuple[int, Operation]] = {}
    for op in ops:
        if op.process == NEMESIS_PROCESS:
            for endpoint in wiped_endpoints(op):
                for connection in [c for c in last_seen if c[1] == endpoint]:
                    del last_seen[connection]
            continue
        if op.kind != "get" or op.outcome != "ok" or op.consistency not in consistencies:
            continue
        if op.result is not None and (op.key, op.result) not in written:
            anomalies.append(
                StaleReadAnomaly("never-written", op, f"{op.key}={op.result!r} was never written")
            )
        revision = revision_of(op)
        if revision is None or op.endpoint in balancers:
            continue
        connection = (op.process, op.endpoint, op.key)
        seen = last_seen.get(connection)
        if seen is not None and revision < seen[0]:
            anomalies.append(
                StaleReadAnomaly(
                    "went-back",
                    op,
                    f"process {op.process} read {op.key} at revision {revision} after "
                    f"revision {seen[0]} (operation {seen[1].index})",
                )
            )
        if seen is None or revision >= seen[0]:
            last_seen[connection] = (revision, op)
    return anomalies
