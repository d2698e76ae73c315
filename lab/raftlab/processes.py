"""Tracking guest processes by PID file, without systemd-machined on the host."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessRef:
    """A pid plus its kernel start time, so a recycled pid is never mistaken for ours."""

    pid: int
    start_time: int

    def serialize(self) -> str:
        return f"{self.pid} {self.start_time}\n"

    @classmethod
    def parse(cls, text: str) -> ProcessRef | None:
        parts = text.split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            return None
        return cls(int(parts[0]), int(parts[1]))


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # Field 2 (comm) may contain spaces; everything after its closing paren is space separated.
    return raw[raw.rindex(")") + 2 :].split()


def process_ref(pid: int) -> ProcessRef | None:
    fields = _stat_fields(pid)
    return None if fields is None else ProcessRef(pid, int(fields[19]))


def is_alive(ref: ProcessRef) -> bool:
    """True while the very process ref names runs (zombies count as gone)."""
    fields = _stat_fields(ref.pid)
    return fields is not None and fields[0] != "Z" and int(fields[19]) == ref.start_time


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def namespace_pid(pid: int) -> int | None:
    """The pid as seen inside its innermost PID namespace (1 for a guest's init)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def pids_referencing(path: Path) -> list[int]:
    """Processes rooted at, or with a command-line argument at or under, path (strays)."""
    target = str(path)

    def under(candidate: str) -> bool:
        return candidate == target or candidate.startswith(target + "/")

    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            proc_root = os.readlink(entry / "root")
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if under(proc_root) or any(under(arg) for arg in args):
            found.append(int(entry.name))
    return found


def send_signal(ref: ProcessRef, signo: int) -> bool:
    if not is_alive(ref):
        return False
    try:
        os.kill(ref.pid, signo)
    except ProcessLookupError:
        return False
    return True


def wait_gone(refs: list[ProcessRef], timeout: float) -> list[ProcessRef]:
    """Wait until every ref has exited; returns those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [ref for ref in refs if is_alive(ref)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


def kill_hard(refs: list[ProcessRef], timeout: float = 15.0) -> list[ProcessRef]:
    for ref in refs:
        send_signal(ref, signal.SIGKILL)
    return wait_gone(refs, timeout)


def read_ref(path: Path) -> ProcessRef | None:
    try:
        return ProcessRef.parse(path.read_text())
    except FileNotFoundError:
        return None


def write_ref(path: Path, ref: ProcessRef) -> None:
    path.write_text(ref.serialize())
