"""Metric names out of the PromQL in the alert rules and the Grafana dashboard.

Not a PromQL parser: enough of the grammar to find every selector's metric name in the
expressions this repository ships. Strings, label matchers (``{...}``), ranges (``[...]``),
grouping clauses (``by (...)`` and friends) and Grafana variables are removed first; what is
left that looks like an identifier and is not a function call, a keyword or a number is a
metric name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "files" / "monitoring"
RULES = MONITORING / "raftnode-alerts.yml"
DASHBOARD = MONITORING / "raftnode-dashboard.json"

KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"bool", "offset", "inf", "nan", "atan2"}
)
"""Operators and modifiers that look like identifiers (``atan2`` is a binary operator)."""

# Synthesised by Prometheus itself for every scrape target; nothing exports them.
SCRAPE_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_IDENT = re.compile(r"(?<![\w.$:])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_LABEL_VALUES = re.compile(r"\blabel_values\s*\(\s*([A-Za-z_:][A-Za-z0-9_:]*)?")


def _strip(expr: str, open_: str, close: str) -> str:
    """``expr`` with every (possibly nested) ``open_ ... close`` section removed."""
    out, depth = [], 0
    for ch in expr:
        if ch == open_:
            depth += 1
        elif ch == close and depth:
            depth -= 1
        elif not depth:
            out.append(ch)
    return "".join(out)


def metric_names(expr: str) -> set[str]:
    """Every metric name a PromQL expression (or a Grafana ``label_values(...)``) selects."""
    m = _LABEL_VALUES.search(expr)
    if m:
        return {m.group(1)} if m.group(1) else set()
    text = _STRING.sub('""', expr)
    text = _strip(_strip(text, "{", "}"), "[", "]")
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\$\w+", " ", text)  # Grafana variables outside selectors
    names = set()
    for ident in _IDENT.finditer(text):
        name, call = ident.group(1), ident.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


def rule_expressions(path: Path = RULES) -> Iterator[tuple[str, str]]:
    """(rule name, expr) of every alerting and recording rule."""
    doc = yaml.safe_load(path.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            yield rule.get("alert") or rule["record"], rule["expr"]


def dashboard_expressions(path: Path = DASHBOARD) -> Iterator[tuple[str, str]]:
    """(panel or variable title, expr) of every PromQL query in the dashboard."""
    doc = json.loads(path.read_text())

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    for panel in panels(doc["panels"]):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield panel["title"], target["expr"]
    for var in doc["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]
            yield f"${var['name']}", query["query"] if isinstance(query, dict) else query


def used_metrics() -> dict[str, set[str]]:
    """Metric name -> where it is used (rule names, panel titles)."""
    used: dict[str, set[str]] = {}
    for where, expr in [*rule_expressions(), *dashboard_expressions()]:
        for name in metric_names(expr):
            used.setdefault(name, set()).add(where)
    return used


def exported_names(exposition: str) -> set[str]:
    """Every series name a ``/metrics`` text exposes or declares.

    A labelled histogram or counter with no children yet (no write served, not the leader)
    has ``# TYPE`` but no samples: its family name stands for ``_bucket``/``_count``/``_sum``
    (histogram, summary) or ``_total`` (counter) too.
    """
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            names.add(name)
            if kind in ("histogram", "gaugehistogram"):
                names.update(f"{name}_{s}" for s in ("bucket", "count", "sum"))
            elif kind == "summary":
                names.update(f"{name}_{s}" for s in ("count", "sum"))
            elif kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
            elif kind == "info":
                names.add(f"{name}_info")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names
