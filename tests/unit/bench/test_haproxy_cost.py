"""bench.haproxy_cost: the CPU counters it reads move as CPU is spent, and the summary is the
medians and ratios the note quotes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench import haproxy_cost
from bench.plots import plot_haproxy_cost
from bench.procs import cpu_seconds, machine_busy_seconds


def test_the_cpu_counters_grow_with_the_work_done() -> None:
    own, machine = cpu_seconds(os.getpid()), machine_busy_seconds()
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        sum(range(10_000))
    assert cpu_seconds(os.getpid()) - own >= 0.1
    assert machine_busy_seconds() - machine >= 0.1
    with pytest.raises(OSError):
        cpu_seconds(2**22 + 1)  # above pid_max: no such process


def run(ok: float, machine: float, haproxy: float = 0.0, leader: float = 110.0) -> dict[str, float]:
    return {
        "ok_per_s": ok,
        "machine_busy": 0.8,
        "leader_batch": 20.0 if haproxy else 24.0,
        "leader_us": leader,
        "followers_us": 120.0,
        "haproxy_us": haproxy,
        "wrk_us": 10.0,
        "machine_us": machine,
    }


def summary() -> dict[str, Any]:
    runs = {
        "direct": [run(6000, 330), run(6500, 310), run(5800, 340)],
        "haproxy": [run(5400, 370, 26, 120), run(5900, 350, 25, 125), run(5000, 380, 27, 118)],
    }
    return haproxy_cost.summarize(runs)


def test_summary_takes_each_sides_medians_and_the_rounds_ratios() -> None:
    s = summary()
    assert s["direct"]["ok_per_s"] == 6000 and s["haproxy"]["ok_per_s"] == 5400
    assert s["haproxy"]["haproxy_us"] == 26 and s["haproxy"]["leader_batch"] == 20
    # Each round's ratio (the box drifts between rounds, not within one), then their median.
    assert s["ratio_per_round"] == [0.9, round(5900 / 6500, 3), round(5000 / 5800, 3)]
    assert s["ratio"] == 0.9
    assert s["leader_bound_ratio"] == round(110 / 120, 3)
    assert s["machine_bound_ratio"] == round(330 / 370, 3)


def test_the_picture_is_written_where_matplotlib_is(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = plot_haproxy_cost(summary(), tmp_path / "haproxy_cost.png")
    assert png is not None and png.stat().st_size > 1000


@pytest.mark.parametrize(
    "argv", [["--rounds", "0"], ["--seconds", "1"], ["--connections", "0"], ["--rounds", "x"]]
)
def test_bad_arguments_are_refused_by_name(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        haproxy_cost.parse_args(argv)


def test_haproxy_cpu_must_be_one_this_process_may_use_with_another_left() -> None:
    allowed = os.sched_getaffinity(0)
    with pytest.raises(SystemExit):
        haproxy_cost.parse_args(["--haproxy-cpu", str(max(allowed) + 1)])
    with pytest.raises(ValueError, match="may use CPUs"):
        haproxy_cost.cpus_left(max(allowed) + 1)
    if len(allowed) >= 2:
        cpu = min(allowed)
        assert haproxy_cost.parse_args(["--haproxy-cpu", str(cpu)]).haproxy_cpu == cpu
        assert haproxy_cost.cpus_left(cpu) == allowed - {cpu}


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to set one apart")
def test_cpus_apart_moves_this_process_off_haproxys_cpu_and_back() -> None:
    allowed = os.sched_getaffinity(0)
    cpu = min(allowed)
    with haproxy_cost.cpus_apart(cpu) as others:
        assert others == allowed - {cpu} == os.sched_getaffinity(0)
    assert os.sched_getaffinity(0) == allowed
    with haproxy_cost.cpus_apart(None) as others:
        assert others is None and os.sched_getaffinity(0) == allowed


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to set one apart")
def test_give_cpu_pins_every_thread_of_a_process() -> None:
    cpu = max(os.sched_getaffinity(0))
    code = "import threading, time; threading.Thread(target=time.sleep, args=(5,)).start(); "
    code += "time.sleep(5)"
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 5
        while len(os.listdir(f"/proc/{child.pid}/task")) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        haproxy_cost.give_cpu(child.pid, cpu)
        tids = [int(t) for t in os.listdir(f"/proc/{child.pid}/task")]
        assert len(tids) == 2
        assert all(os.sched_getaffinity(tid) == {cpu} for tid in tids)
    finally:
        child.kill()
        child.wait(timeout=5)
