"""Side-by-side results: A/B measurements, their ratio, and the text table both commands print.

Pure functions only (no processes, no I/O), so the unit tests check them directly.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(slots=True)
class Measurement:
    """One system on one row, over its A/B/A/B rounds (each round one wrk run)."""

    system: str
    ok_per_s: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    errors: int = 0

    def add(self, ok_per_s: float, p50_ms: float, p99_ms: float, errors: int) -> None:
        self.ok_per_s.append(ok_per_s)
        self.p50_ms.append(p50_ms)
        self.p99_ms.append(p99_ms)
        self.errors += errors

    @property
    def rate(self) -> float:
        return statistics.fmean(self.ok_per_s) if self.ok_per_s else 0.0

    @property
    def p50(self) -> float:
        return statistics.median(self.p50_ms) if self.p50_ms else 0.0

    @property
    def p99(self) -> float:
        return statistics.median(self.p99_ms) if self.p99_ms else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "system": self.system,
            "ok_per_s": round(self.rate, 1),
            "p50_ms": round(self.p50, 2),
            "p99_ms": round(self.p99, 2),
            "errors": self.errors,
            "rounds": [
                {"ok_per_s": round(r, 1), "p50_ms": round(a, 2), "p99_ms": round(b, 2)}
                for r, a, b in zip(self.ok_per_s, self.p50_ms, self.p99_ms, strict=True)
            ],
        }


@dataclass(slots=True)
class Row:
    """One table row: A (raftnode, in some mode) against B (the baseline for that row)."""

    name: str
    a: Measurement
    b: Measurement
    connections: int
    target: float | None = None

    @property
    def ratio(self) -> float | None:
        return ratio(self.a.rate, self.b.rate)

    def to_json(self) -> dict[str, object]:
        r = self.ratio
        return {
            "name": self.name,
            "connections": self.connections,
            "a": self.a.to_json(),
            "b": self.b.to_json(),
            "ratio": None if r is None else round(r, 3),
            "target": self.target,
        }


def ratio(a: float, b: float) -> float | None:
    """a / b, or None when b is zero (nothing to compare with)."""
    if b <= 0:
        return None
    return a / b


def format_ratio(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}x"


def format_rate(rate: float) -> str:
    return f"{rate:,.0f}"


def format_latency(p50: float, p99: float) -> str:
    return f"{p50:.1f}/{p99:.1f}"


HEADERS = (
    "row",
    "conns",
    "A",
    "A ok/s",
    "A p50/p99 ms",
    "B",
    "B ok/s",
    "B p50/p99 ms",
    "A/B",
    "target",
    "errors A/B",
)


def table_cells(row: Row) -> list[str]:
    return [
        row.name,
        str(row.connections),
        row.a.system,
        format_rate(row.a.rate),
        format_latency(row.a.p50, row.a.p99),
        row.b.system,
        format_rate(row.b.rate),
        format_latency(row.b.p50, row.b.p99),
        format_ratio(row.ratio),
        "" if row.target is None else format_ratio(row.target),
        f"{row.a.errors}/{row.b.errors}",
    ]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: left-aligned first column, the others right-aligned."""
    widths = [len(h) for h in headers]
    for cells in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, cells, strict=True)]

    def line(cells: Sequence[str]) -> str:
        out = [cells[0].ljust(widths[0])]
        out += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(c) for c in rows)])


def format_rows(rows: Sequence[Row]) -> str:
    return format_table(HEADERS, [table_cells(r) for r in rows])
