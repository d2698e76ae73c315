"""The run report: fault windows, figures, verdict, files."""

from __future__ import annotations

import json
from pathlib import Path

from chaos.history import Operation
from chaos.linearizability import check
from chaos.report import fault_windows, passed, summarize, summary_text, write_report
from chaos.set_checker import check_set

from .histories import get, op, put


def _history() -> list[Operation]:
    return [
        op("nemesis", "fault", 1, 1.2, value="kill-leader", note="n1"),
        put(1, 0, 0.5, "a"),
        put(1, 2, 3, "b", outcome="info"),
        get(2, 4, 4.5, "a"),
        op("nemesis", "heal", 5, 6, value="kill-leader", note="n1"),
        op(3, "add", 6, 7, key="s", value="e1"),
        op(0, "read_set", 8, 9, key="s", result=["e1"]),
    ]


def test_fault_windows_pair_faults_with_heals() -> None:
    windows = fault_windows(_history())
    assert [(w.kind, w.target, w.start, w.end) for w in windows] == [("kill-leader", "n1", 1, 6)]


def test_summary_of_a_clean_run(tmp_path: Path) -> None:
    ops = _history()
    summary = summarize(ops, check(ops), [check_set(ops)], [])
    assert summary["operations"] == 5
    assert summary["by_outcome"] == {"ok": 4, "fail": 0, "info": 1}
    assert summary["faults"] == {"kill-leader": 1}
    assert summary["linearizability"]["anomalies"] == 0
    assert passed(summary)
    text = summary_text(summary)
    assert "faults by kind: kill-leader 1" in text and text.endswith("RESULT: PASS")
    paths = write_report(tmp_path, ops, summary)
    assert json.loads((tmp_path / "summary.json").read_text())["lost"] == 0
    assert all(p.exists() for p in paths)


def test_summary_of_a_run_with_an_anomaly(tmp_path: Path) -> None:
    ops = [*_history(), get(2, 10, 11, "stale")]
    summary = summarize(ops, check(ops), [check_set(ops)], [])
    assert summary["linearizability"]["anomalies"] == 1
    assert not passed(summary)
    text = summary_text(summary)
    assert "smallest failing sub-history" in text and "RESULT: FAIL" in text
    write_report(tmp_path, ops, summary)
    assert (tmp_path / "summary.txt").read_text().count("stale") >= 1
