"""Refuse writes that add data while the data directory's filesystem is nearly full.

A store that fills its disk fails every write, the log's appends included, and recovers only by
hand. Like etcd's space alarm, the guard refuses writes that would add data (507) while less than
``min_free_bytes`` stay free, and deletes keep working so an operator can make room. ``statvfs``
is asked at most once per ``recheck_seconds``, so the guard costs nothing per request.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on ``path``'s filesystem."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class DiskSpaceGuard:
    def __init__(
        self,
        path: Path,
        min_free_bytes: int,
        *,
        recheck_seconds: float = 1.0,
        measure: Callable[[Path], int] = free_bytes,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.min_free_bytes = min_free_bytes
        self.recheck_seconds = recheck_seconds
        self._measure = measure
        self._clock = clock
        self._checked_at = float("-inf")
        self._free = 0

    def free(self) -> int:
        """Free bytes, measured at most once per ``recheck_seconds``."""
        now = self._clock()
        if now - self._checked_at >= self.recheck_seconds:
            try:
                self._free = self._measure(self.path)
            except OSError:
                self._free = 0  # a data directory that cannot be asked about takes no data
            self._checked_at = now
        return self._free

    def too_full(self) -> bool:
        """Whether writes that add data must be refused now (0 turns the guard off)."""
        return self.min_free_bytes > 0 and self.free() < self.min_free_bytes
