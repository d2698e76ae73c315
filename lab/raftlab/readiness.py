"""Waiting, with a deadline, until guests have booted and answer SSH like a fresh VM."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .commands import run_command
from .errors import LabError
from .guest_exec import exec_in
from .processes import ProcessRef, is_alive
from .ssh_access import ssh_argv

BOOTED_STATES = ("running", "degraded")


@dataclass
class GuestProbe:
    """One guest to wait for."""

    name: str
    address: str
    init: ProcessRef
    ready: bool = False
    last_state: str = "unknown"


def system_state(init: ProcessRef) -> str:
    """`systemctl is-system-running` inside the guest (starting, running, degraded, ...)."""
    result = exec_in(init, ["systemctl", "is-system-running"], timeout=10, check=False)
    return result.stdout.strip() or "unknown"


def ssh_answers(private_key: Path, address: str) -> bool:
    argv = ssh_argv(private_key, address, ["true"], connect_timeout=2)
    return run_command(argv, timeout=10, check=False).returncode == 0


def failed_units(init: ProcessRef) -> list[str]:
    argv = ["systemctl", "list-units", "--failed", "--plain", "--no-legend"]
    result = exec_in(init, argv, timeout=10, check=False)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def _probe(probe: GuestProbe, private_key: Path) -> bool:
    if not is_alive(probe.init):
        raise LabError(f"{probe.name} died while booting (see its console.log)")
    probe.last_state = system_state(probe.init)
    return probe.last_state in BOOTED_STATES and ssh_answers(private_key, probe.address)


def wait_until_ready(
    probes: list[GuestProbe],
    private_key: Path,
    timeout: float,
    on_ready: Callable[[GuestProbe, float], None] | None = None,
) -> None:
    """Poll every guest (in parallel) until systemd is up and SSH answers; LabError on timeout."""
    started = time.monotonic()
    deadline = started + timeout
    with ThreadPoolExecutor(max_workers=max(1, len(probes))) as pool:
        while True:
            pending = [p for p in probes if not p.ready]
            results = pool.map(lambda p: (p, _probe(p, private_key)), pending)
            for probe, ready in results:
                if ready:
                    probe.ready = True
                    if on_ready is not None:
                        on_ready(probe, time.monotonic() - started)
            pending = [p for p in probes if not p.ready]
            if not pending:
                return
            if time.monotonic() >= deadline:
                summary = ", ".join(f"{p.name}: {p.last_state}" for p in pending)
                raise LabError(f"hosts not ready after {timeout:.0f}s ({summary})")
            time.sleep(0.3)
