"""A well-behaved client that keeps reading while a test sends hostile input elsewhere.

The hostile-input tests assert that the node kept serving everyone else: ``Bystander`` reads one
key in a loop on its own thread, bounded in time and count, and records each answer's status and
latency.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

from tests.integration.cluster import http

MAX_READS = 20_000


class Bystander:
    def __init__(self, url: str, pause: float = 0.01, max_seconds: float = 120.0) -> None:
        self.url = url
        self.pause = pause
        self.max_seconds = max_seconds
        self.latencies: list[float] = []
        self.failures: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bystander", daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            if len(self.latencies) + len(self.failures) >= MAX_READS:
                break
            start = time.monotonic()
            r = http("GET", self.url, timeout=5.0)
            if r.status == 200:
                self.latencies.append(time.monotonic() - start)
            else:
                self.failures.append(r.status)
            self._stop.wait(self.pause)

    def __enter__(self) -> Bystander:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=10.0)

    def assert_served(self, max_latency: float = 1.0) -> None:
        """Every read answered 200, and none took longer than ``max_latency`` seconds."""
        assert self.latencies, "the well-behaved client was never served"
        assert not self.failures, f"the well-behaved client got {self.failures[:10]}"
        worst = max(self.latencies)
        assert worst < max_latency, f"the well-behaved client waited {worst:.3f}s"
