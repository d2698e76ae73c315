"""A chaos run's report: summary JSON and text, and PNG pictures when matplotlib is present.

The pictures: latency and throughput over time with the fault windows drawn as bands, and,
for each non-linearizable key, its smallest failing sub-history found as a timeline.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.plots import pyplot

from .elle import ElleResult
from .history import NEMESIS_PROCESS, Operation
from .linearizability import CheckResult
from .set_checker import SetResult
from .stale_reads import StaleReadAnomaly


@dataclass(frozen=True)
class FaultWindow:
    kind: str
    target: str
    start: float
    end: float


def fault_windows(operations: Sequence[Operation]) -> list[FaultWindow]:
    """Each fault from its start to the end of its own heal (same kind, same target: the first
    word of the note), or of a heal-all, or of the last record. Faults of a combined round
    overlap; a fault whose kind and target are already open closes the earlier one."""
    nemesis = sorted(
        (op for op in operations if op.process == NEMESIS_PROCESS), key=lambda op: op.invoke
    )
    last = max((op.complete for op in operations), default=0.0)
    windows: list[FaultWindow] = []
    open_faults: dict[tuple[str, str], Operation] = {}
    for op in nemesis:
        if op.outcome == "fail":
            continue
        key = (str(op.value), _target(op))
        if op.kind == "fault":
            if key in open_faults:
                windows.append(_window(open_faults.pop(key), op.invoke))
            open_faults[key] = op
        elif op.kind == "heal" and op.value == "heal-all":
            windows += [_window(fault, op.complete) for fault in open_faults.values()]
            open_faults.clear()
        elif op.kind == "heal" and key in open_faults:
            windows.append(_window(open_faults.pop(key), op.complete))
    windows += [_window(fault, last) for fault in open_faults.values()]
    return sorted(windows, key=lambda w: w.start)


def _target(op: Operation) -> str:
    words = op.note.split()
    return words[0] if words else ""


def _window(fault: Operation, end: float) -> FaultWindow:
    return FaultWindow(str(fault.value), fault.note, fault.invoke, end)


def _inside(t: float, windows: Sequence[FaultWindow]) -> bool:
    return any(w.start <= t <= w.end for w in windows)


def summarize(
    operations: Sequence[Operation],
    linearizability: CheckResult,
    sets: Sequence[SetResult],
    stale: Sequence[StaleReadAnomaly],
    list_append: ElleResult | None = None,
) -> dict[str, Any]:
    """``list_append``: the Elle-style check of the txn operations, when the run had any."""
    client = [op for op in operations if op.process != NEMESIS_PROCESS]
    windows = fault_windows(operations)
    start = min((op.invoke for op in operations), default=0.0)
    end = max((op.complete for op in operations), default=0.0)
    duration = max(end - start, 1e-9)
    fault_seconds = sum(w.end - w.start for w in windows)
    ok = [op for op in client if op.outcome == "ok"]
    ok_in_faults = sum(1 for op in ok if _inside(op.complete, windows))
    by_outcome = Counter(op.outcome for op in client)
    by_kind = Counter(f"{op.kind}:{op.outcome}" for op in client)
    return {
        "start": start,
        "duration_s": round(duration, 1),
        "operations": len(client),
        "by_outcome": {o: by_outcome.get(o, 0) for o in ("ok", "fail", "info")},
        "by_kind": dict(sorted(by_kind.items())),
        "faults": dict(sorted(Counter(w.kind for w in windows).items())),
        "fault_windows": [asdict(w) for w in windows],
        "nemesis_failures": [
            {"kind": op.value, "error": op.note}
            for op in operations
            if op.process == NEMESIS_PROCESS and op.outcome == "fail"
        ],
        "throughput": {
            "ok_per_s": round(len(ok) / duration, 1),
            "ok_per_s_during_faults": round(ok_in_faults / fault_seconds, 1)
            if fault_seconds
            else None,
            "ok_per_s_outside_faults": round(
                (len(ok) - ok_in_faults) / max(duration - fault_seconds, 1e-9), 1
            ),
        },
        "linearizability": {
            "keys": len(linearizability.keys),
            "operations_checked": sum(k.operations for k in linearizability.keys),
            "anomalies": len(linearizability.anomalies),
            "unknown": [k.key for k in linearizability.unknown],
            "seconds": round(sum(k.seconds for k in linearizability.keys), 2),
            "failing_keys": [
                {
                    "key": k.key,
                    "operations": k.operations,
                    "witness": [op.to_json() | {"index": op.index} for op in k.witness],
                }
                for k in linearizability.anomalies
            ],
        },
        "sets": [asdict(s) for s in sets],
        "lost": sum(len(s.lost) for s in sets),
        "duplicated": sum(len(s.duplicated) for s in sets),
        "unexpected": sum(len(s.unexpected) for s in sets),
        "stale_read_anomalies": [
            {"kind": a.kind, "detail": a.detail, "index": a.operation.index} for a in stale
        ],
        "list_append": None if list_append is None else _list_append(list_append),
    }


def _list_append(result: ElleResult) -> dict[str, Any]:
    return {
        "txns": result.txns,
        "committed": result.committed,
        "recovered": result.recovered,
        "keys": result.keys,
        "anomalies": len(result.anomalies),
        "by_kind": result.by_kind(),
        "examples": [
            {"kind": a.kind, "detail": a.detail, "ops": list(a.ops)} for a in result.anomalies[:50]
        ],
    }


def passed(summary: dict[str, Any]) -> bool:
    lin = summary["linearizability"]
    return (
        lin["anomalies"] == 0
        and not lin["unknown"]
        and summary["lost"] == 0
        and summary["duplicated"] == 0
        and summary["unexpected"] == 0
        and not summary["stale_read_anomalies"]
        and not summary["nemesis_failures"]
        and not (summary.get("list_append") or {}).get("anomalies")
    )


def summary_text(summary: dict[str, Any]) -> str:
    lin = summary["linearizability"]
    tp = summary["throughput"]
    lines = [
        f"chaos run: {summary['duration_s']} s, {summary['operations']} operations",
        "operations by outcome: " + ", ".join(f"{k} {v}" for k, v in summary["by_outcome"].items()),
        "operations by kind: " + ", ".join(f"{k} {v}" for k, v in summary["by_kind"].items()),
        "faults by kind: "
        + (", ".join(f"{k} {v}" for k, v in summary["faults"].items()) or "none"),
        f"nemesis failures: {len(summary['nemesis_failures'])} (must be 0)",
        f"throughput (ok/s): overall {tp['ok_per_s']}, during faults "
        f"{tp['ok_per_s_during_faults']}, outside faults {tp['ok_per_s_outside_faults']}",
        f"linearizability: {lin['keys']} keys, {lin['operations_checked']} operations checked "
        f"in {lin['seconds']} s: anomalies {lin['anomalies']} (must be 0)"
        + (f", UNKNOWN (budget exhausted): {lin['unknown']}" if lin["unknown"] else ""),
    ]
    if summary.get("failpoints"):
        lines.append(
            f"failpoints on every node (broken on purpose, the run must FAIL): "
            f"{', '.join(summary['failpoints'])}"
        )
    lines += [f"  {f['kind']}: {f['error']}" for f in summary["nemesis_failures"][:10]]
    for failing in lin["failing_keys"]:
        lines.append(f"  key {failing['key']}: smallest failing sub-history:")
        lines += [f"    {json.dumps(op, sort_keys=True)}" for op in failing["witness"]]
    for s in summary["sets"]:
        lines.append(
            f"set {s['key']}: {s['acknowledged']} acknowledged, {s['indeterminate']} "
            f"indeterminate ({s['recovered']} found), final size {s['final_size']}: "
            f"lost {len(s['lost'])}, duplicated {len(s['duplicated'])}, "
            f"unexpected {len(s['unexpected'])} (must be 0)"
        )
        for name in ("lost", "duplicated", "unexpected"):
            if s[name]:
                lines.append(f"  {name}: {s[name][:20]}")
    stale = summary["stale_read_anomalies"]
    lines.append(f"stale-read anomalies: {len(stale)} (must be 0)")
    lines += [f"  {a['kind']}: {a['detail']}" for a in stale[:20]]
    elle = summary.get("list_append")
    if elle is not None:
        lines.append(
            f"list-append (Elle, strict serializability): {elle['txns']} txns "
            f"({elle['committed']} committed, {elle['recovered']} indeterminate found applied) "
            f"on {elle['keys']} keys: anomalies {elle['anomalies']} (must be 0)"
            + (
                ": " + ", ".join(f"{k} {v}" for k, v in elle["by_kind"].items())
                if elle["by_kind"]
                else ""
            )
        )
        lines += [f"  {a['kind']}: {a['detail']}" for a in elle["examples"][:20]]
    lines.append("RESULT: " + ("PASS" if passed(summary) else "FAIL"))
    return "\n".join(lines)


def write_report(
    out_dir: Path, operations: Sequence[Operation], summary: dict[str, Any]
) -> list[Path]:
    """summary.json, summary.txt and the pictures; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "summary.json", out_dir / "summary.txt"]
    written[0].write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    written[1].write_text(summary_text(summary) + "\n")
    plt = pyplot()
    if plt is None:
        return written
    written.append(_plot_timeline(plt, operations, summary, out_dir / "latency-throughput.png"))
    for n, failing in enumerate(summary["linearizability"]["failing_keys"]):
        written.append(_plot_witness(plt, failing, summary["start"], out_dir / f"anomaly-{n}.png"))
    return written


_COLOURS = {"ok": "tab:green", "fail": "tab:orange", "info": "tab:red"}


def _bands(ax: Any, summary: dict[str, Any]) -> None:
    start = summary["start"]
    for w in summary["fault_windows"]:
        ax.axvspan(w["start"] - start, w["end"] - start, color="tab:gray", alpha=0.2, lw=0)
        if ax.get_subplotspec().is_first_row():
            ax.text(
                w["start"] - start,
                1.0,
                w["kind"],
                transform=ax.get_xaxis_transform(),
                fontsize=7,
                rotation=90,
                va="top",
                ha="right",
                alpha=0.8,
            )


def _plot_timeline(
    plt: Any, operations: Sequence[Operation], summary: dict[str, Any], path: Path
) -> Path:
    start = summary["start"]
    client = [op for op in operations if op.process != NEMESIS_PROCESS]
    fig, (lat, tput) = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
    for outcome, colour in _COLOURS.items():
        chosen = [op for op in client if op.outcome == outcome]
        lat.scatter(
            [op.invoke - start for op in chosen],
            [max(op.complete - op.invoke, 1e-4) * 1000 for op in chosen],
            s=3,
            color=colour,
            label=f"{outcome} ({len(chosen)})",
        )
    lat.set_yscale("log")
    lat.set_ylabel("latency (ms)")
    lat.legend(loc="upper right", fontsize=8)
    seconds = int(summary["duration_s"]) + 1
    for outcome, colour in _COLOURS.items():
        per_second = [0] * (seconds + 1)
        for op in client:
            if op.outcome == outcome:
                per_second[min(int(op.complete - start), seconds)] += 1
        tput.plot(range(seconds + 1), per_second, color=colour, label=outcome, lw=1)
    tput.set_ylabel("operations/s (by completion)")
    tput.set_xlabel("seconds since start (grey bands: faults)")
    tput.legend(loc="upper right", fontsize=8)
    for ax in (lat, tput):
        _bands(ax, summary)
    fig.suptitle("chaos run: latency and throughput")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_witness(plt: Any, failing: dict[str, Any], start: float, path: Path) -> Path:
    ops = failing["witness"]
    processes = sorted({op["process"] for op in ops})
    fig, ax = plt.subplots(figsize=(12, 1.5 + 0.5 * len(processes)))
    horizon = max((op["complete"] for op in ops), default=start) - start
    for op in ops:
        y = processes.index(op["process"])
        left = op["invoke"] - start
        right = op["complete"] - start if op["outcome"] == "ok" else horizon + 0.1
        ax.barh(y, right - left, left=left, height=0.5, color=_COLOURS[op["outcome"]], alpha=0.6)
        label = {
            "put": f"put {op.get('value')}",
            "get": f"get -> {op.get('result')}",
            "cas": f"cas {op.get('expected')}->{op.get('value')}",
            "delete": "delete",
        }.get(op["kind"], op["kind"])
        ax.text(left, y, f" #{op['index']} {label}", va="center", fontsize=7)
    ax.set_yticks(range(len(processes)), [f"client {p}" for p in processes])
    ax.set_xlabel("seconds since start (red: indeterminate, may apply until the end)")
    ax.set_title(f"key {failing['key']}: smallest non-linearizable sub-history found")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
