"""Freezing and thawing a process inside a guest (SIGSTOP/SIGCONT), by unit name or guest pid."""

from __future__ import annotations

import signal

from .errors import LabError
from .guest_exec import exec_in
from .processes import ProcessRef

# Signals every process in the unit's cgroup. `systemctl kill` would do, but on a cgroup-v1 host
# systemd 252 inside nspawn reports EIO for the "auxiliary processes" even when it delivered.
_SIGNAL_UNIT = """\
cg=$(systemctl show -P ControlGroup "$1")
[ -n "$cg" ] || { echo "unit $1 has no control group" >&2; exit 1; }
for procs in /sys/fs/cgroup/systemd$cg/cgroup.procs /sys/fs/cgroup/unified$cg/cgroup.procs \\
             /sys/fs/cgroup$cg/cgroup.procs; do
  pids=$(cat "$procs" 2>/dev/null)
  if [ -n "$pids" ]; then exec kill -s "$2" $pids; fi
done
echo "no processes found for $1" >&2
exit 1
"""


def _signal_target(init: ProcessRef, target: str, signo: signal.Signals) -> None:
    name = signo.name.removeprefix("SIG")
    if target.isdigit():
        exec_in(init, ["kill", "-s", name, target], timeout=15)
        return
    unit = target if "." in target else f"{target}.service"
    active = exec_in(init, ["systemctl", "is-active", unit], timeout=10, check=False)
    if active.stdout.strip() not in ("active", "reloading", "activating", "deactivating"):
        raise LabError(f"unit {unit} is not running ({active.stdout.strip() or 'unknown'})")
    exec_in(init, ["sh", "-c", _SIGNAL_UNIT, "signal-unit", unit, name], timeout=15)


def pause(init: ProcessRef, target: str) -> None:
    """SIGSTOP every process of a unit (or one guest pid): it stays alive but stops answering."""
    _signal_target(init, target, signal.SIGSTOP)


def resume(init: ProcessRef, target: str) -> None:
    """SIGCONT what pause stopped."""
    _signal_target(init, target, signal.SIGCONT)
