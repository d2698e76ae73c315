"""The node's CPU scheduling policy: read from /proc, set once before any thread starts,
left alone with ``inherit``, and a refusal reported (never raised) with the way out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from raftnode import cpu_scheduling
from raftnode.cpu_scheduling import apply_policy, current_policy

_PROBE = """
import os, threading
from raftnode.cpu_scheduling import apply_policy, current_policy
os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))  # whatever pytest runs under
before = current_policy()
problem = apply_policy({policy!r})
seen = []
t = threading.Thread(target=lambda: seen.append(current_policy()))
t.start(); t.join()
print(before, problem, current_policy(), seen[0])
"""


def _probe(policy: str) -> list[str]:
    """Run ``apply_policy`` in a fresh interpreter (it changes the calling thread for good)."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(policy=policy)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout.split()


def test_batch_switches_the_thread_and_the_threads_it_starts_later() -> None:
    before, problem, after, started_later = _probe("batch")
    assert before == str(os.SCHED_OTHER)
    assert problem == "None"
    assert after == started_later == str(os.SCHED_BATCH)


def test_inherit_leaves_the_policy_alone() -> None:
    before, problem, after, started_later = _probe("inherit")
    assert problem == "None"
    assert before == after == started_later == str(os.SCHED_OTHER)


def test_already_batch_needs_no_system_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_scheduling, "current_policy", lambda: os.SCHED_BATCH)

    def refuse(*_: object) -> None:
        raise AssertionError("sched_setscheduler called")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    assert apply_policy("batch") is None


def test_a_refusal_is_reported_with_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    # What a unit's SystemCallFilter=~@resources does to sched_setscheduler.
    monkeypatch.setattr(cpu_scheduling, "current_policy", lambda: os.SCHED_OTHER)

    def refuse(*_: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    problem = apply_policy("batch")
    assert problem is not None
    assert "Operation not permitted" in problem and "CPUSchedulingPolicy=batch" in problem


def test_an_unknown_policy_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'fifo'"):
        apply_policy("fifo")


def test_the_policy_field_is_found_after_a_command_name_with_spaces_and_parentheses(
    tmp_path: Path,
) -> None:
    fields = [str(n) for n in range(3, 53)]  # fields 3..52 of proc_pid_stat(5)
    fields[41 - 3] = "3"
    stat = tmp_path / "stat"
    stat.write_text("1234 (a) b (c) " + " ".join(fields) + "\n")
    assert current_policy(stat) == 3
    assert current_policy() in (os.SCHED_OTHER, os.SCHED_BATCH)  # this thread's, from /proc
