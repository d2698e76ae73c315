"""``Client``: the blocking raftnode client (thread-safe; one instance per process is enough)."""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any

from raftnode.client import lease_ops
from raftnode.client import operations as ops
from raftnode.client.errors import LeaseExists, LeaseNotFound, ServerRefusal
from raftnode.client.lease import Lease
from raftnode.client.lease_ops import LeaseStatus
from raftnode.client.operations import (
    UNSET,
    Count,
    KeyValue,
    Page,
    PrevValue,
    Unset,
    WriteResult,
)
from raftnode.client.retry import CallAttempts, HttpAnswer, RetryPolicy, TransportError
from raftnode.client.settings import ClientSettings
from raftnode.client.transport import HttpTransport, Transport
from raftnode.client.txn import Compare, Txn, TxnOp, TxnResult, txn_call, txn_result
from raftnode.client.watch import StreamOpener, Watch, WatchOptions, http_stream_opener
from raftnode.client.watch_events import WatchTarget, check_start_revision
from raftnode.consistency import Consistency


class Client:
    """A raftnode cluster, seen through one or more endpoints.

    ``endpoints``: node URLs (``http://10.0.0.1:8081``), the VIP, a comma-separated string of
    them, or None for ``$RAFTNODE_ENDPOINTS``. The first endpoint is tried first; after a
    failure the next one, and the client sticks to the last one that answered.

    ``timeout`` bounds each call (attempts and backoff together, default 15 s; every method
    takes its own ``timeout=`` too); ``attempt_timeout`` bounds one attempt (default 6 s).
    ``token`` is sent as ``Authorization: Bearer ...``. TLS: ``ca_file`` (verify the nodes),
    ``cert_file``/``key_file`` (a client certificate), or a ready ``ssl_context``.

    Every write carries an ``Idempotency-Key`` (a new uuid4 unless the caller passes
    ``idempotency_key=``) and is resent with the same key and body after any failure that
    leaves its outcome open: it is applied exactly once. ``transport``, ``watch_opener``,
    ``clock``, ``sleep`` and ``rng`` exist for tests.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str] | None = None,
        *,
        timeout: float | None = None,
        attempt_timeout: float | None = None,
        retry: RetryPolicy | None = None,
        token: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        transport: Transport | None = None,
        watch_opener: StreamOpener | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = ClientSettings.build(
            endpoints,
            timeout=timeout,
            attempt_timeout=attempt_timeout,
            retry=retry,
            token=token,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            ssl_context=ssl_context,
        )
        self._transport = transport or HttpTransport(self.settings.ssl_context)
        self._watch_opener = watch_opener or http_stream_opener(self.settings.ssl_context)
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._preferred = 0

    @property
    def endpoints(self) -> list[str]:
        return [e.url for e in self.settings.endpoints]

    # -- reads -------------------------------------------------------------------------------

    def get(
        self,
        key: str,
        *,
        consistency: Consistency | str = Consistency.LINEARIZABLE,
        timeout: float | None = None,
    ) -> KeyValue:
        """The key's value; raises ``NotFound`` when it does not exist."""
        answer = self._call(ops.get_call(key, consistency), timeout)
        return ops.key_value(key, answer)

    def page(
        self,
        prefix: str = "",
        *,
        start_after: str | None = None,
        limit: int | None = None,
        start: str | None = None,
        end: str | None = None,
        consistency: Consistency | str = Consistency.LINEARIZABLE,
        timeout: float | None = None,
    ) -> Page:
        """One page of keys under ``prefix`` (and from ``start`` inclusive to ``end``
        exclusive, when given) after ``start_after``, in key order."""
        call = ops.page_call(prefix, limit, start_after, consistency, start, end)
        answer = self._call(call, timeout)
        return ops.page(answer)

    def range(
        self,
        prefix: str = "",
        *,
        start_after: str | None = None,
        page_size: int | None = None,
        start: str | None = None,
        end: str | None = None,
        consistency: Consistency | str = Consistency.LINEARIZABLE,
        timeout: float | None = None,
    ) -> Iterator[KeyValue]:
        """Every key under ``prefix`` (from ``start`` to ``end``, after ``start_after``), page
        by page with the cursor (``page_size`` keys a request; the nodes also bound a page in
        bytes).
        Each page is its own read (and ``timeout`` bounds each page): a key written while
        the listing runs may or may not appear, none appears twice."""
        cursor = start_after
        while True:
            page = self.page(
                prefix,
                start_after=cursor,
                limit=page_size,
                start=start,
                end=end,
                consistency=consistency,
                timeout=timeout,
            )
            yield from page.items
            if not page.more or not page.items:
                return
            cursor = page.items[-1].key

    def count(
        self,
        prefix: str = "",
        *,
        start: str | None = None,
        end: str | None = None,
        consistency: Consistency | str = Consistency.LINEARIZABLE,
        timeout: float | None = None,
    ) -> Count:
        """How many keys ``range`` with the same arguments would list (one request)."""
        answer = self._call(ops.count_call(prefix, start, end, consistency), timeout)
        return ops.count(answer)

    def watch(
        self,
        key: str | None = None,
        *,
        prefix: str | None = None,
        start_revision: int | None = None,
        progress: bool = False,
        idle_timeout: float = 30.0,
        timeout: float | None = None,
    ) -> Watch:
        """Changes to ``key`` (or every key under ``prefix``) from ``start_revision`` (None:
        from the next revision), as an iterator of ``WatchEvent`` in revision order, each
        exactly once across dead nodes and reconnections. ``progress``: yield progress
        events too; ``idle_timeout``: a stream silent this long is reconnected; ``timeout``:
        raise ``Unavailable`` when no node takes the watch for that long. Raises
        ``WatchCompacted`` when the changes it needs are gone. The first stream is open when
        this returns (so "the next revision" is one after now). Close it (or use ``with``)."""
        target = WatchTarget(key, prefix)
        options = WatchOptions(self.settings.policy_for(timeout), idle_timeout, progress)
        return Watch(
            self.settings.endpoints,
            self.settings.base_headers,
            target,
            check_start_revision(start_revision),
            options,
            self._watch_opener,
            first_endpoint=self._preferred,
            clock=self._clock,
            rng=self._rng,
        ).start()

    # -- writes ------------------------------------------------------------------------------

    def put(
        self,
        key: str,
        value: str,
        *,
        prev_value: PrevValue = UNSET,
        prev_revision: int | None = None,
        lease: int | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> WriteResult:
        """Write ``key`` (attached to ``lease`` when given: the key goes when the lease
        ends; a put without ``lease`` detaches it). With ``prev_value`` a compare-and-set:
        only if the key holds that value (None: only if absent); with ``prev_revision``
        only if the key's ``mod_revision`` is that revision (0: only if absent); otherwise
        ``CompareFailed``, and nothing is written."""
        call = ops.put_call(key, value, prev_value, idempotency_key, prev_revision, lease)
        return ops.write_result(call, key, self._call(call, timeout))

    def create(
        self,
        key: str,
        value: str,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> WriteResult:
        """Write ``key`` only if it does not exist (``CompareFailed`` otherwise)."""
        return self.put(
            key, value, prev_value=None, idempotency_key=idempotency_key, timeout=timeout
        )

    def compare_and_swap(
        self,
        key: str,
        expected: str | None,
        value: str,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> WriteResult:
        """Replace ``expected`` (None: the key is absent) by ``value``, atomically."""
        return self.put(
            key, value, prev_value=expected, idempotency_key=idempotency_key, timeout=timeout
        )

    def delete(
        self,
        key: str,
        *,
        prev_value: str | Unset = UNSET,
        prev_revision: int | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> WriteResult:
        """Delete ``key`` (only if it holds ``prev_value``, and only if its ``mod_revision``
        is ``prev_revision``, when given); ``NotFound`` when it does not exist."""
        call = ops.delete_call(key, prev_value, idempotency_key, prev_revision)
        return ops.write_result(call, key, self._call(call, timeout))

    def txn(
        self,
        compare: Sequence[Compare] | Txn = (),
        success: Sequence[TxnOp] = (),
        failure: Sequence[TxnOp] = (),
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> TxnResult:
        """If every ``compare`` holds, run ``success``, else ``failure``: atomically, at one
        revision. Retried like every write, with one idempotency key: applied exactly once.
        A ``Txn`` (e.g. ``Txn.from_json``) may be passed as ``compare``."""
        txn = (
            compare
            if isinstance(compare, Txn)
            else Txn(tuple(compare), tuple(success), tuple(failure))
        )
        call = txn_call(txn, idempotency_key)
        return txn_result(call, self._call(call, timeout))

    # -- leases ------------------------------------------------------------------------------

    def grant_lease(
        self,
        ttl: int,
        *,
        keep_alive: bool = True,
        on_lost: Callable[[Lease], None] | None = None,
        timeout: float | None = None,
    ) -> Lease:
        """Grant a lease of ``ttl`` whole seconds; with ``keep_alive`` a background thread
        renews it every ``ttl / 3`` until ``revoke``/``close`` (or ``with`` ends), and
        ``on_lost`` is called if it ends otherwise (see ``Lease``)."""
        lease = self._grant(ttl, timeout)
        return Lease(
            self, lease[0], lease[1], keep_alive=keep_alive, on_lost=on_lost, clock=self._clock
        )

    def _grant(self, ttl: int, timeout: float | None) -> tuple[LeaseStatus, float]:
        chosen = lease_ops.pick_id(self._rng)
        call = lease_ops.grant_call(ttl, chosen)
        sent = self._clock()
        try:
            return lease_ops.lease_status(self._call(call, timeout)), sent
        except LeaseExists:
            # The id is ours (random below 2^53): an earlier attempt of this call applied.
            return LeaseStatus(chosen, float(ttl), ttl), sent

    def lease_keep_alive(self, lease: int, *, timeout: float | None = None) -> LeaseStatus:
        """Renew ``lease`` once to its full TTL; ``LeaseNotFound`` when it is gone."""
        return lease_ops.lease_status(self._call(lease_ops.keep_alive_call(lease), timeout))

    def revoke_lease(self, lease: int, *, timeout: float | None = None) -> bool:
        """Revoke ``lease`` (its keys are deleted at one revision); False when it was
        already gone (never granted, expired, or revoked by an earlier attempt)."""
        try:
            self._call(lease_ops.revoke_call(lease), timeout)
        except LeaseNotFound:
            return False
        return True

    def lease_info(self, lease: int, *, timeout: float | None = None) -> LeaseStatus:
        """The lease's remaining TTL, granted TTL and keys; ``LeaseNotFound`` when gone."""
        return lease_ops.lease_status(self._call(lease_ops.info_call(lease), timeout))

    def leases(self, *, timeout: float | None = None) -> list[LeaseStatus]:
        """Every live lease, by id."""
        return lease_ops.lease_list(self._call(lease_ops.list_call(), timeout))

    # -- cluster -----------------------------------------------------------------------------

    def members(self, *, timeout: float | None = None) -> dict[str, Any]:
        """The members, the leader's id and term (``GET /admin/v1/members``; on a node's
        client port: the VIP closes the admin API)."""
        answer = self._call(ops.Call("GET", "/admin/v1/members", None), timeout)
        return ops.answer_object(answer)

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the kept-alive connections."""
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the retry loop ----------------------------------------------------------------------

    def _call(self, call: ops.Call, timeout: float | None) -> HttpAnswer:
        attempts = CallAttempts(
            self.settings.endpoints,
            self.settings.policy_for(timeout),
            self._clock(),
            self._preferred,
            call.idempotency_key,
            self._rng,
        )
        headers = self.settings.headers(call)
        while True:
            attempt_timeout = attempts.attempt_timeout(self._clock())
            endpoint = attempts.endpoint
            try:
                answer = self._transport.request(
                    endpoint, call.method, call.path, call.body, headers, attempt_timeout
                )
            except TransportError as e:
                delay = attempts.failed(e, self._clock())
            else:
                try:
                    outcome = attempts.answered(answer, self._clock())
                except ServerRefusal:
                    self._preferred = attempts.index
                    raise
                if isinstance(outcome, HttpAnswer):
                    self._preferred = attempts.index
                    return outcome
                delay = outcome
            if delay > 0:
                self._sleep(delay)
