"""Running commands inside a guest through its namespaces (nsenter), no SSH needed."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from .commands import run_command
from .processes import ProcessRef

GUEST_ENV = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/root",
    "LANG=C.UTF-8",
)


def nsenter_argv(init: ProcessRef, command: Sequence[str]) -> list[str]:
    """Enter every namespace of the guest's init, with a clean guest environment."""
    return ["nsenter", "-t", str(init.pid), "-a", "--", "env", "-i", *GUEST_ENV, *command]


def exec_in(
    init: ProcessRef,
    command: Sequence[str],
    *,
    timeout: float = 60.0,
    check: bool = True,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return run_command(
        nsenter_argv(init, command), timeout=timeout, check=check, input_text=input_text
    )
