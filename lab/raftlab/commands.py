"""Running host commands with a timeout on every call, so no lab step can hang."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Sequence

from .errors import LabError

DEFAULT_TIMEOUT_S = 60.0


def run_command(
    argv: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    check: bool = True,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv, capture its output, and raise LabError on failure or timeout when check is set."""
    try:
        result = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            stdin=None if input_text is not None else subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"command timed out after {timeout:.0f}s: {' '.join(argv)}") from exc
    except FileNotFoundError as exc:
        raise LabError(f"command not found: {argv[0]}") from exc
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise LabError(f"command failed ({result.returncode}): {' '.join(argv)}\n{detail}")
    return result


def run_streaming(argv: Sequence[str], *, timeout: float, log_prefix: str = "  ") -> None:
    """Run argv, echoing each output line with a prefix (for long builds); raise on failure.

    A watchdog kills the command at the deadline even while it prints nothing.
    """
    with subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    ) as proc:
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        tail: list[str] = []
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip()
                tail = [*tail[-19:], line]
                print(f"{log_prefix}{line}", flush=True)
            proc.wait()
        except BaseException:
            proc.kill()
            raise
        finally:
            timed_out = (
                not watchdog.is_alive() and proc.returncode is not None and proc.returncode < 0
            )
            watchdog.cancel()
    if timed_out:
        raise LabError(f"command timed out after {timeout:.0f}s: {' '.join(argv)}")
    if proc.returncode != 0:
        raise LabError(f"command failed ({proc.returncode}): {' '.join(argv)}\n" + "\n".join(tail))
