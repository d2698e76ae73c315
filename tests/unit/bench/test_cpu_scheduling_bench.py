"""bench.cpu_scheduling: the context-switch counter it reads, the medians and ratios it
reports (one figure per round, batch over inherit), its picture and its argument checks."""

from __future__ import annotations

import argparse
import os
import threading
from pathlib import Path

import pytest

from bench import cpu_scheduling
from bench.plots import plot_cpu_scheduling
from bench.procs import ProcessGroup


def test_context_switches_count_every_thread_of_the_process() -> None:
    before = cpu_scheduling.context_switches(os.getpid())
    slept, counted = threading.Event(), threading.Event()

    def sleeper() -> None:  # 50 timed sleeps, then stays alive (only live threads count)
        for _ in range(50):
            counted.wait(0.001)
        slept.set()
        counted.wait(10)

    waiter = threading.Thread(target=sleeper)
    waiter.start()
    try:
        assert slept.wait(10)
        voluntary, involuntary = cpu_scheduling.context_switches(os.getpid())
    finally:
        counted.set()
        waiter.join()
    assert voluntary - before[0] >= 50  # each sleep is a switch of the other thread
    assert involuntary >= before[1]
    with pytest.raises(OSError):
        cpu_scheduling.context_switches(2**22 + 1)  # above pid_max: no such process


def _figures(ok: float) -> dict[str, float]:
    return {
        "ok_per_s": ok,
        "p99_ms": 5.0,
        "machine_us": 1e6 / ok,
        "voluntary_per_write": 4.0,
        "involuntary_per_write": 1.0,
    }


def test_measure_alternates_the_policies_and_takes_medians_and_round_ratios(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rates = {"batch": iter([3100.0, 3000.0, 3300.0]), "inherit": iter([3000.0, 2900.0, 3000.0])}
    order: list[str] = []

    def fake_run(
        procs: ProcessGroup, work: Path, policy: str, args: argparse.Namespace, conns: int
    ) -> dict[str, float]:
        order.append(policy)
        return _figures(next(rates[policy]))

    monkeypatch.setattr(cpu_scheduling, "run_once", fake_run)
    args = cpu_scheduling.parse_args(["--rounds", "3", "--connections", "8"])
    with ProcessGroup() as procs:
        result = cpu_scheduling.measure(procs, tmp_path, args)
    assert order == ["batch", "inherit"] * 3
    (row,) = result["rows"]
    assert row["connections"] == 8
    assert row["batch"]["ok_per_s"] == 3100.0 and row["inherit"]["ok_per_s"] == 3000.0
    assert row["ratio_per_round"] == [1.033, 1.034, 1.1]
    assert row["ratio"] == pytest.approx(3000.0 / 2900.0)
    cpu_scheduling.report(result)  # prints the table without failing


def test_the_picture_is_written_where_matplotlib_is(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    row = {"connections": 8, "ratio": 1.05, "batch": _figures(3150.0), "inherit": _figures(3000.0)}
    png = plot_cpu_scheduling({"rows": [row]}, tmp_path / "cpu_scheduling.png")
    assert png is not None and png.stat().st_size > 1000
    png = plot_cpu_scheduling(
        {"subject": "haproxy", "rows": [row]}, tmp_path / "cpu_scheduling_haproxy.png"
    )
    assert png is not None and png.stat().st_size > 1000


@pytest.mark.parametrize(
    "argv",
    [
        ["--connections", "8,x"],
        ["--connections", "0"],
        ["--connections", "5000"],
        ["--rounds", "0"],
        ["--seconds", "1"],
        ["--subject", "keepalived"],
    ],
)
def test_bad_arguments_are_refused_by_name(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        cpu_scheduling.parse_args(argv)


def test_connection_counts_parse() -> None:
    assert cpu_scheduling.parse_args(["--connections", "8,64,256"]).connections == [8, 64, 256]
    assert cpu_scheduling.parse_args([]).connections == [8, 64]


def test_the_subject_is_the_nodes_unless_haproxy_is_asked_for() -> None:
    assert cpu_scheduling.parse_args([]).subject == "nodes"
    assert cpu_scheduling.parse_args(["--subject", "haproxy"]).subject == "haproxy"
