"""The node process's CPU scheduling policy: ``SCHED_BATCH`` unless configured ``inherit``.

Linux's fair scheduler lets a thread that wakes up preempt the thread running on its CPU. In a
node that happens several times per write: the disk thread wakes the event loop when an fsync
ends, a peer's acknowledgement wakes the loop, the loop's answer wakes a client. When the woken
thread is the event loop and the preempted one is the disk thread holding the GIL (or the other
way round), the woken thread blocks on the GIL straight away and the CPU switches back: two
context switches for nothing, and the cache of the thread that did the work is gone.
``SCHED_BATCH`` (sched(7)) keeps the node's share of the CPU and its nice value; its threads
only stop preempting on wake-up, and wait at most a scheduler tick for a busy CPU instead.
Election timeouts are hundreds of ticks long.

On the 2-core bench machine, three nodes and wrk sharing it (``python -m bench.cpu_scheduling``,
three rounds of fresh clusters): writes 1.11x at 8 connections (involuntary context switches per
write 0.74 against 2.32, the machine's CPU per write 498 against 540 us), 1.04x at 64, 1.02x at
256; p99 within 7%.
"""

from __future__ import annotations

import os
from pathlib import Path

POLICIES = ("batch", "inherit")
"""``batch``: the node switches itself to ``SCHED_BATCH`` at start (under systemd the unit
does it: ``CPUSchedulingPolicy=batch``); ``inherit``: it keeps what its launcher gave it."""

DEFAULT_POLICY = "batch"

_POLICY_FIELD = 41
"""``policy`` in proc_pid_stat(5), counted from 1."""


def current_policy(stat_file: Path = Path("/proc/thread-self/stat")) -> int:
    """The calling thread's scheduling policy (``os.SCHED_*``), read from ``/proc``: a
    systemd unit's system call filter may refuse ``sched_getscheduler``, never a file read."""
    text = stat_file.read_text()
    # The command name (field 2) is in parentheses and may hold spaces and ")".
    after_name = text.rsplit(")", 1)[1].split()
    return int(after_name[_POLICY_FIELD - 3])


def apply_policy(policy: str) -> str | None:
    """Put the calling thread (and the threads it starts later) under ``policy``; call it
    before the process starts any thread. Returns None when done or nothing was asked, else
    what went wrong (the node then runs on under the policy it has)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown CPU scheduling policy {policy!r} (known: {', '.join(POLICIES)})")
    if policy == "inherit" or current_policy() == os.SCHED_BATCH:
        return None
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except OSError as e:
        return (
            f"cannot switch to SCHED_BATCH ({e.strerror or e}); under systemd set "
            "CPUSchedulingPolicy=batch in the unit, or cpu_scheduling: inherit to stop trying"
        )
    return None
