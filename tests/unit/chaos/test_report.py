"""The run report: fault windows, figures, verdict, files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import chaos.report as report
from chaos.history import Operation
from chaos.http_client import Answer
from chaos.linearizability import check
from chaos.report import fault_windows, passed, summarize, summary_text, write_report
from chaos.set_checker import check_set
from chaos.workload import classify_write

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


def test_fault_windows_of_a_combined_round_overlap_and_pair_by_kind_and_target() -> None:
    ops = [
        op("nemesis", "fault", 1, 2, value="membership", note="n2 removed"),
        op("nemesis", "fault", 3, 3.1, value="isolate-minority", note="n3"),
        op("nemesis", "heal", 5, 5.2, value="isolate-minority", note="n3"),
        op("nemesis", "fault", 6, 6.1, value="kill-random", note="n1"),
        op("nemesis", "heal", 9, 12, value="membership", note="n2 voter in 3 s"),
        op("nemesis", "heal", 13, 14, value="heal-all", note="all"),
        put(1, 0, 15, "a"),
    ]
    windows = [(w.kind, w.start, w.end) for w in fault_windows(ops)]
    assert windows == [
        ("membership", 1, 12),
        ("isolate-minority", 3, 5.2),
        ("kill-random", 6, 14),  # never healed on its own: closed by heal-all
    ]


def test_a_disk_full_refusal_is_a_failed_write_not_an_indeterminate_one() -> None:
    refused = Answer(507, True, body=b'{"error": "disk_full", "message": "nothing was written"}')
    assert classify_write(refused) == "fail"
    assert classify_write(Answer(507, True, body=b'{"error": "other"}')) == "info"


def _stale_read_among_noise() -> list[Operation]:
    """Not linearizable: b is written after a, then a read returns a. Noise around it: other
    keys' operations and reads of this key that are fine, which the witness must leave out."""
    ops = [put(1, 0, 1, "a"), get(2, 1.5, 2, "a"), put(3, 3, 4, "b"), get(2, 5, 6, "b")]
    ops += [get(4, 7, 8, "a")]  # the anomaly: a after b was read
    ops += [get(2, 9, 10, "b"), put(5, 11, 12, "c"), get(5, 13, 14, "c")]
    ops += [put(1, t, t + 0.5, f"o{t}", key="other") for t in range(0, 14, 2)]
    return ops


class FakePyplot:
    """Records what a figure draws; savefig writes a marker file."""

    def __init__(self) -> None:
        self.bars: list[tuple[float, float, float, str]] = []
        self.texts: list[str] = []
        self.titles: list[str] = []

    def subplots(self, *args: object, **kwargs: object) -> tuple[FakePyplot, FakePyplot]:
        return self, self

    def barh(self, y: float, width: float, left: float, color: str, **_: object) -> None:
        self.bars.append((y, left, width, color))

    def text(self, x: float, y: float, s: str, **_: object) -> None:
        self.texts.append(s)

    def set_title(self, title: str) -> None:
        self.titles.append(title)

    def savefig(self, path: Path, **_: object) -> None:
        path.write_bytes(b"fake")

    def __getattr__(self, name: str) -> object:
        return lambda *args, **kwargs: None


def test_the_anomaly_picture_draws_only_the_smallest_failing_sub_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ops = _stale_read_among_noise()
    summary = summarize(ops, check(ops), [], [])
    (failing,) = summary["linearizability"]["failing_keys"]
    witness = {(o["kind"], o.get("value"), o.get("result")) for o in failing["witness"]}
    assert witness == {("put", "a", None), ("put", "b", None), ("get", None, "a")}
    plt = FakePyplot()
    monkeypatch.setattr(report, "pyplot", lambda: plt)
    monkeypatch.setattr(report, "_plot_timeline", lambda _plt, _ops, _summary, path: path)
    paths = write_report(tmp_path, ops, summary)
    assert tmp_path / "anomaly-0.png" in paths and (tmp_path / "anomaly-0.png").exists()
    witness_bars = plt.bars[-3:]
    assert len(plt.bars) == 3, "one bar per operation of the witness, nothing else"
    assert sorted(left for _, left, _, _ in witness_bars) == [0, 3, 7]
    assert any("get -> a" in t for t in plt.texts) and any("put b" in t for t in plt.texts)
    assert plt.titles == ["key k: smallest non-linearizable sub-history found"]


def test_the_anomaly_picture_is_a_real_png(tmp_path: Path) -> None:
    # matplotlib comes with the bench extra, which `make test-unit` installs: never skipped.
    ops = _stale_read_among_noise()
    summary = summarize(ops, check(ops), [], [])
    write_report(tmp_path, ops, summary)
    png = (tmp_path / "anomaly-0.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    assert (tmp_path / "latency-throughput.png").exists()
