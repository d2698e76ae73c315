"""An exclusive file lock with a bounded wait, so concurrent lab runs queue instead of racing."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import LabError


@contextmanager
def exclusive_lock(path: Path, *, timeout: float, what: str) -> Iterator[None]:
    """Hold an flock on path; wait at most timeout seconds for another holder to finish."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as exc:
                if time.monotonic() >= deadline:
                    busy = f"{what} is busy (lock {path} held for over {timeout:.0f}s)"
                    raise LabError(busy) from exc
                if not announced:
                    print(f"raftlab: waiting for another process holding {what} ...", flush=True)
                    announced = True
                time.sleep(0.5)
        yield
    finally:
        os.close(fd)
