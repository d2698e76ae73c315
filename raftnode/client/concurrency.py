"""``Lock`` and ``Election`` on leases and revisions (etcd's ``client/v3/concurrency``).

Each contender grants a lease (kept alive in the background), then creates the key
``<name>/<lease id>`` attached to it, only if absent. The contender whose key has the lowest
``create_revision`` under ``<name>/`` holds the lock (leads the election); every other one
watches the deletion of the key just before its own, so a release wakes one waiter, not all.
A holder's key goes when it releases, or when its lease ends (its process died, or it lost
the cluster for a TTL): the next one takes over within the TTL.

The holder's ``create_revision`` is its **fencing revision**: it strictly increases from
one holder to the next. A lock held by a process that stalled past its TTL is no longer
held, but that process may not know yet: guard every effect with the fencing revision (send
it along and have the resource refuse older ones), or, for writes to raftnode itself, put
``lock.guard()`` in the transaction's compares.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType

from raftnode.client.errors import ClientError
from raftnode.client.lease import Lease
from raftnode.client.operations import KeyValue
from raftnode.client.sync_client import Client
from raftnode.client.txn import Compare
from raftnode.client.watch import Watch
from raftnode.client.watch_events import WatchCompacted

DEFAULT_TTL = 10


class LockLost(ClientError):
    """The contender's lease or key is gone: the lock (leadership) is not held."""


class AcquireTimeout(ClientError):
    """The lock (leadership) was not obtained within the timeout; nothing is left behind."""


def key_prefix(name: str) -> str:
    if not isinstance(name, str) or not name.strip("/"):
        raise ValueError(f"a lock or election name must be a non-empty string, not {name!r}")
    return name.rstrip("/") + "/"


def contender_key(prefix: str, lease: int) -> str:
    return f"{prefix}{lease:016x}"


def in_order(items: Sequence[KeyValue]) -> list[KeyValue]:
    """The contenders by ``create_revision``: the first holds the lock."""
    return sorted(
        (kv for kv in items if kv.create_revision is not None),
        key=lambda kv: kv.create_revision or 0,
    )


def predecessor(items: Sequence[KeyValue], own_revision: int) -> KeyValue | None:
    """The contender just before ``own_revision`` (None: this one is first)."""
    before = [kv for kv in in_order(items) if (kv.create_revision or 0) < own_revision]
    return before[-1] if before else None


@dataclass(frozen=True, slots=True)
class LeaderInfo:
    """The leader of an election: its key, its value (what it proclaimed) and its fencing
    revision (the key's ``create_revision``)."""

    key: str
    value: str
    revision: int


class _Contender:
    """One lease, one key under the prefix, and the wait for the first place."""

    def __init__(self, client: Client, name: str, ttl: int) -> None:
        self.client = client
        self.prefix = key_prefix(name)
        self.ttl = ttl
        self.lease: Lease | None = None
        self.key: str | None = None
        self.revision: int | None = None
        self.first = False
        self._watch: Watch | None = None
        self._guard = threading.Lock()

    def enter(self, value: str, timeout: float | None) -> int:
        """Wait for the first place; its fencing revision."""
        if self.lease is not None:
            raise RuntimeError(f"already holding or waiting under {self.prefix!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        self.lease = self.client.grant_lease(self.ttl, on_lost=self._lease_lost)
        try:
            self.key = contender_key(self.prefix, self.lease.id)
            written = self.client.put(self.key, value, prev_value=None, lease=self.lease.id)
            self.revision = written.revision
            self._waitfirst_contender(deadline)
        except BaseException:
            self.leave()
            raise
        self.first = True
        return self.revision

    def leave(self) -> None:
        lease, self.lease = self.lease, None
        self.first = False
        self.revision = None
        self._close_watch()
        if lease is not None:
            with contextlib.suppress(ClientError):  # else the key goes at the TTL
                lease.revoke()

    @property
    def holding(self) -> bool:
        return self.first and self.lease is not None and self.lease.alive

    def _lease_lost(self, lease: Lease) -> None:
        self._close_watch()

    def _close_watch(self) -> None:
        with self._guard:
            watch = self._watch
        if watch is not None:
            watch.close()

    def _check_alive(self) -> Lease:
        lease = self.lease
        if lease is None or lease.lost.is_set():
            reason = lease.lost_reason if lease is not None else "released"
            raise LockLost(f"{self.key}: the lease is gone ({reason})")
        return lease

    def _waitfirst_contender(self, deadline: float | None) -> None:
        assert self.revision is not None and self.key is not None
        while True:
            self._check_alive()
            page = self.client.page(self.prefix, limit=1000)
            if not any(kv.key == self.key for kv in page.items):
                raise LockLost(f"{self.key} was deleted: the lease ended")
            before = predecessor(page.items, self.revision)
            if before is None:
                return
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise AcquireTimeout(
                    f"{self.prefix}: not first within the timeout ({before.key} is ahead)"
                )
            self._wait_deleted(before.key, page.revision + 1, remaining)

    def _wait_deleted(self, key: str, start: int, remaining: float | None) -> None:
        """Until ``key`` is deleted at or after ``start``, the time is up, or the lease is
        lost (the caller checks which)."""
        watch = self.client.watch(key, start_revision=start, progress=True)
        with self._guard:
            self._watch = watch
        timer = None
        if remaining is not None:
            timer = threading.Timer(remaining, watch.close)
            timer.daemon = True
            timer.start()
        try:
            if self.lease is None or self.lease.lost.is_set():
                return
            for event in watch:
                if event.type == "delete" and event.key == key:
                    return
        except WatchCompacted:
            return  # list again
        finally:
            if timer is not None:
                timer.cancel()
            with self._guard:
                self._watch = None
            watch.close()


class Lock:
    """A distributed mutex named ``name`` (keys under ``name/``), on a lease of ``ttl``
    seconds. ``acquire(timeout)`` returns the fencing revision; ``with Lock(...)`` acquires
    with ``timeout`` and releases."""

    def __init__(
        self, client: Client, name: str, *, ttl: int = DEFAULT_TTL, timeout: float | None = None
    ) -> None:
        self._contender = _Contender(client, name, ttl)
        self.timeout = timeout
        self.fencing_revision: int | None = None

    @property
    def key(self) -> str | None:
        return self._contender.key

    @property
    def lease(self) -> Lease | None:
        return self._contender.lease

    @property
    def held(self) -> bool:
        """True while acquired and the lease surely lives."""
        return self._contender.holding

    def acquire(self, timeout: float | None = None) -> int:
        """Wait (at most ``timeout`` seconds; None: no bound) for the lock; its fencing
        revision. ``AcquireTimeout`` when the time is up, ``LockLost`` when the lease ends
        while waiting."""
        self.fencing_revision = self._contender.enter("", timeout)
        return self.fencing_revision

    def release(self) -> None:
        """Release (revoke the lease, deleting the key); safe to call when not held."""
        self._contender.leave()
        self.fencing_revision = None

    def guard(self) -> Compare:
        """A transaction compare that holds only while this lock is held."""
        if self.key is None or self.fencing_revision is None:
            raise LockLost("the lock is not held")
        return Compare.create_revision(self.key, "==", self.fencing_revision)

    def __enter__(self) -> Lock:
        self.acquire(self.timeout)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class Election:
    """A leader election named ``name`` (keys under ``name/``) on leases of ``ttl`` seconds:
    ``campaign(value)`` waits to lead, ``resign()`` steps down, ``leader()`` and
    ``observe()`` tell anyone who leads."""

    def __init__(self, client: Client, name: str, *, ttl: int = DEFAULT_TTL) -> None:
        self.client = client
        self._contender = _Contender(client, name, ttl)
        self.prefix = self._contender.prefix
        self.fencing_revision: int | None = None

    @property
    def lease(self) -> Lease | None:
        return self._contender.lease

    @property
    def is_leader(self) -> bool:
        return self._contender.holding

    def campaign(self, value: str, timeout: float | None = None) -> int:
        """Wait to lead, proclaiming ``value`` (e.g. this process's address); the fencing
        revision. ``AcquireTimeout``/``LockLost`` as for ``Lock.acquire``."""
        self.fencing_revision = self._contender.enter(value, timeout)
        return self.fencing_revision

    def proclaim(self, value: str) -> None:
        """Change the leader's value without an election (only while leading)."""
        contender = self._contender
        if not contender.holding or contender.key is None or contender.lease is None:
            raise LockLost("not the leader")
        current = self.client.get(contender.key)
        self.client.put(
            contender.key, value, prev_revision=current.mod_revision, lease=contender.lease.id
        )

    def resign(self) -> None:
        """Step down (the next contender leads); safe to call when not leading."""
        self._contender.leave()
        self.fencing_revision = None

    def guard(self) -> Compare:
        """A transaction compare that holds only while this contender leads."""
        key = self._contender.key
        if key is None or self.fencing_revision is None:
            raise LockLost("not the leader")
        return Compare.create_revision(key, "==", self.fencing_revision)

    def leader(self) -> LeaderInfo | None:
        """Who leads now (None: nobody campaigns)."""
        return first_contender(self.client.page(self.prefix, limit=1000).items)

    def observe(self, *, timeout: float | None = None) -> Iterator[LeaderInfo | None]:
        """The leader now, then each change of leader (or of its value) as it happens;
        ends after ``timeout`` seconds when given."""
        deadline = None if timeout is None else time.monotonic() + timeout
        page = self.client.page(self.prefix, limit=1000)
        shown = first_contender(page.items)
        yield shown
        with self.client.watch(
            prefix=self.prefix, start_revision=page.revision + 1, progress=True
        ) as watch:
            timer = None
            if deadline is not None:
                timer = threading.Timer(max(0.0, deadline - time.monotonic()), watch.close)
                timer.daemon = True
                timer.start()
            try:
                for event in watch:
                    if event.type == "progress":
                        continue
                    now = first_contender(self.client.page(self.prefix, limit=1000).items)
                    if now != shown:
                        shown = now
                        yield now
            finally:
                if timer is not None:
                    timer.cancel()


def first_contender(items: Sequence[KeyValue]) -> LeaderInfo | None:
    ordered = in_order(items)
    if not ordered:
        return None
    kv = ordered[0]
    return LeaderInfo(kv.key, kv.value, kv.create_revision or 0)
