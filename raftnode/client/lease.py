"""``Lease``: a granted lease that a background thread keeps alive (``Client.grant_lease``).

The thread renews the lease every third of its TTL. A lease counts as alive until the TTL
after the last keep-alive the leader answered, counted from when that keep-alive was *sent*
(the leader renews from when it receives it, which is later): so when ``alive`` turns False
the cluster may still hold the lease for a moment, never the other way round. A lease is lost
when the leader answers that it no longer exists, or when no keep-alive was answered within
the TTL; then ``lost`` is set, ``lost_reason`` says why and ``on_lost`` is called (once, from
the keep-alive thread). ``revoke`` (and leaving ``with``) ends it on purpose: that is not a
loss.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from raftnode.client.errors import ClientError, LeaseNotFound
from raftnode.client.lease_ops import LeaseStatus

if TYPE_CHECKING:
    from raftnode.client.sync_client import Client

RETRY_FRACTION = 10
"""After a failed keep-alive the next try comes after a tenth of the TTL (at most 0.5 s)."""


@dataclass(slots=True)
class RenewalSchedule:
    """When to renew a lease and until when it is surely alive (pure: times are passed in)."""

    ttl: float
    renewed_at: float
    """When the last keep-alive (or the grant) that the leader answered was sent."""
    failed_at: float | None = None

    @property
    def deadline(self) -> float:
        return self.renewed_at + self.ttl

    def next_attempt(self) -> float:
        if self.failed_at is not None:
            return self.failed_at + min(self.ttl / RETRY_FRACTION, 0.5)
        return self.renewed_at + self.ttl / 3

    def renewed(self, sent_at: float) -> None:
        self.renewed_at = max(self.renewed_at, sent_at)
        self.failed_at = None

    def failed(self, now: float) -> None:
        self.failed_at = now

    def expired(self, now: float) -> bool:
        return now >= self.deadline


class Lease:
    """A lease of ``ttl`` seconds with id ``id``; see the module docstring."""

    def __init__(
        self,
        client: Client,
        status: LeaseStatus,
        granted_at: float,
        *,
        keep_alive: bool = True,
        on_lost: Callable[[Lease], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.id = status.id
        self.ttl = status.granted_ttl
        self._client = client
        self._clock = clock
        self._schedule = RenewalSchedule(float(status.granted_ttl), granted_at)
        self._on_lost = on_lost
        self._ended = threading.Event()  # revoked or lost: no more keep-alives
        self.lost = threading.Event()
        self.lost_reason: str | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if keep_alive:
            self._thread = threading.Thread(
                target=self._keep_alive_loop, name=f"raftnode-lease-{self.id}", daemon=True
            )
            self._thread.start()

    @property
    def alive(self) -> bool:
        """True while the lease surely exists: not lost, and within the TTL of the last
        answered keep-alive."""
        return not self._ended.is_set() and not self._schedule.expired(self._clock())

    def remaining(self) -> float:
        """Seconds the lease surely lives without another keep-alive (0 when not alive)."""
        if self._ended.is_set():
            return 0.0
        return max(0.0, self._schedule.deadline - self._clock())

    def keep_alive_once(self, *, timeout: float | None = None) -> LeaseStatus:
        """Renew now (raises ``LeaseNotFound`` when the lease is gone)."""
        sent = self._clock()
        try:
            status = self._client.lease_keep_alive(self.id, timeout=timeout)
        except LeaseNotFound:
            self._lose("the cluster no longer holds the lease (expired or revoked)")
            raise
        with self._lock:
            self._schedule.renewed(sent)
        return status

    def revoke(self, *, timeout: float | None = None) -> bool:
        """Stop the keep-alives and revoke the lease (its keys go at once). False when it
        was already gone."""
        self._ended.set()
        self._join()
        return self._client.revoke_lease(self.id, timeout=timeout)

    def close(self) -> None:
        """Stop the keep-alives without revoking: the lease ends at its TTL."""
        self._ended.set()
        self._join()

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(ClientError):  # else it ends at its TTL
            self.revoke()

    # -- internals ---------------------------------------------------------------------------

    def _join(self) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.ttl + 1)

    def _lose(self, reason: str) -> None:
        with self._lock:
            if self._ended.is_set():
                return
            self.lost_reason = reason
            self._ended.set()
            self.lost.set()
        if self._on_lost is not None:
            self._on_lost(self)

    def _keep_alive_loop(self) -> None:
        while True:
            with self._lock:
                wait = self._schedule.next_attempt() - self._clock()
            if self._ended.wait(max(0.0, wait)):
                return
            sent = self._clock()
            with self._lock:
                budget = max(0.2, self._schedule.deadline - sent)
            try:
                self._client.lease_keep_alive(self.id, timeout=budget)
            except LeaseNotFound:
                self._lose("the cluster no longer holds the lease (expired or revoked)")
                return
            except ClientError as e:
                now = self._clock()
                with self._lock:
                    self._schedule.failed(now)
                    expired = self._schedule.expired(now)
                if expired:
                    self._lose(f"no keep-alive was answered within the TTL ({self.ttl} s): {e}")
                    return
                continue
            with self._lock:
                self._schedule.renewed(sent)
