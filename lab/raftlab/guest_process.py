"""Booting a guest with systemd-nspawn and stopping it, tracked by PID files (no machined)."""

from __future__ import annotations

import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import LabError
from .processes import (
    ProcessRef,
    children_of,
    is_alive,
    kill_hard,
    namespace_pid,
    pids_referencing,
    process_ref,
    read_ref,
    send_signal,
    wait_gone,
    write_ref,
)

INIT_APPEAR_TIMEOUT_S = 30.0
POWEROFF_TIMEOUT_S = 60.0
# systemd's "halt and power off" signal.
SIGNAL_POWEROFF = signal.SIGRTMIN + 4


@dataclass(frozen=True)
class GuestFiles:
    """Where one guest's runtime records live, inside its host dir."""

    host_dir: Path

    @property
    def root(self) -> Path:
        return self.host_dir / "root"

    @property
    def nspawn_pid(self) -> Path:
        return self.host_dir / "nspawn.pid"

    @property
    def init_pid(self) -> Path:
        return self.host_dir / "init.pid"

    @property
    def console_log(self) -> Path:
        return self.host_dir / "console.log"


def nspawn_argv(files: GuestFiles, machine: str, hostname: str, bridge: str) -> list[str]:
    return [
        "systemd-nspawn",
        "--register=no",
        "--keep-unit",
        "-q",
        "-b",
        "-D",
        str(files.root),
        "-M",
        machine,
        f"--hostname={hostname}",
        f"--network-bridge={bridge}",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        "--console=read-only",
    ]


def running_init(files: GuestFiles) -> ProcessRef | None:
    """The guest's PID 1 as a host process, if it runs."""
    ref = read_ref(files.init_pid)
    return ref if ref is not None and is_alive(ref) else None


def boot(files: GuestFiles, machine: str, hostname: str, bridge: str) -> ProcessRef:
    """Start nspawn detached from us (new session, reparented away); return the guest's init."""
    if running_init(files) is not None:
        raise LabError(f"{hostname} is already running")
    argv = nspawn_argv(files, machine, hostname, bridge)
    log = shlex.quote(str(files.console_log))
    # sh backgrounds setsid+nspawn and exits at once: nspawn never becomes our child/zombie.
    script = f"{shlex.join(['setsid', *argv])} </dev/null >>{log} 2>&1 & echo $!"
    launched = subprocess.run(
        ["sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=10,
        start_new_session=True,
        check=True,
    )
    nspawn = process_ref(int(launched.stdout.strip()))
    if nspawn is None:
        raise LabError(f"systemd-nspawn for {hostname} exited at once; see {files.console_log}")
    write_ref(files.nspawn_pid, nspawn)
    init = _wait_for_init(nspawn, hostname, files)
    write_ref(files.init_pid, init)
    return init


def _wait_for_init(nspawn: ProcessRef, hostname: str, files: GuestFiles) -> ProcessRef:
    deadline = time.monotonic() + INIT_APPEAR_TIMEOUT_S
    while time.monotonic() < deadline:
        if not is_alive(nspawn):
            tail = files.console_log.read_text(errors="replace")[-2000:]
            raise LabError(f"systemd-nspawn for {hostname} exited while starting:\n{tail}")
        for child in children_of(nspawn.pid):
            ref = process_ref(child)
            if ref is not None and namespace_pid(child) == 1:
                return ref
        time.sleep(0.05)
    raise LabError(f"{hostname}: no guest init appeared within {INIT_APPEAR_TIMEOUT_S:.0f}s")


def _tracked(files: GuestFiles) -> list[ProcessRef]:
    refs = [read_ref(files.init_pid), read_ref(files.nspawn_pid)]
    return [ref for ref in refs if ref is not None and is_alive(ref)]


def is_running(files: GuestFiles) -> bool:
    return bool(_tracked(files))


def poweroff(files: GuestFiles, timeout: float = POWEROFF_TIMEOUT_S) -> bool:
    """Clean shutdown through systemd; False if it had to be killed instead."""
    init = running_init(files)
    if init is None:
        kill(files)  # nothing to shut down cleanly; reap a leftover nspawn if any
        return True
    send_signal(init, SIGNAL_POWEROFF)
    if not wait_gone(_tracked(files), timeout):
        _forget(files)
        return True
    kill(files)
    return False


def kill(files: GuestFiles) -> bool:
    """Hard kill: SIGKILL the guest's init (its whole PID namespace dies) and nspawn."""
    refs = _tracked(files)
    strays = [r for pid in pids_referencing(files.root) if (r := process_ref(pid)) is not None]
    targets = refs + [r for r in strays if r not in refs]
    left = kill_hard(targets)
    if left:
        raise LabError(
            f"processes {[r.pid for r in left]} of {files.host_dir.name} survived SIGKILL"
        )
    _forget(files)
    return bool(targets)


def _forget(files: GuestFiles) -> None:
    files.init_pid.unlink(missing_ok=True)
    files.nspawn_pid.unlink(missing_ok=True)
