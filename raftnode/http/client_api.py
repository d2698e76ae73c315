"""The client key-value API; see ``docs/openapi.yaml``.

Served by ``raftnode.http.connection`` (HTTP/1.1 on asyncio + httptools). Every request gets
one deadline (``request_timeout``) and every wait inside it is bounded by that deadline. Writes
at a follower are forwarded to the leader. Handlers raise ``ApiError``; ``ClientApi.handle``
renders every error in one place and records each request's metrics once. Answers are compact
JSON.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from raftnode.config import Address, Limits
from raftnode.consistency import Consistency
from raftnode.defaults import Watch
from raftnode.http import requests
from raftnode.http.admin_api import AdminApi
from raftnode.http.auth import ClientAuth
from raftnode.http.connection import ConnectionLimits, HttpConnection, Request, Response
from raftnode.http.connection_gate import ConnectionGate, Refusal
from raftnode.http.errors import (
    ApiError,
    ErrorCode,
    bad_request,
    disk_full,
    idempotency_key_reused,
    method_not_allowed,
    not_found,
    outcome_unknown,
    quota_exceeded,
    unavailable,
    upgrade_in_progress,
)
from raftnode.http.forward import (
    HOPS_HEADER,
    IDEMPOTENCY_HEADER,
    MAX_HOPS,
    REPLAYED_HEADER,
    ForwardedResponse,
    ForwardNotSent,
    ForwardUnknown,
    LeaderConnections,
)
from raftnode.http.lease_api import LeaseApi, is_lease_path, lease_not_found
from raftnode.http.watch_stream import WATCH_PARAMS, event_stream, open_watch, start_revision
from raftnode.kv.commands import (
    Command,
    CommandResult,
    KeyRevisions,
    Outcome,
    Txn,
    TxnOpResult,
    TxnResult,
    compact_json,
)
from raftnode.kv.lessor import Lessor
from raftnode.kv.service import DiskFull, KeyValueService, UpgradeInProgress
from raftnode.kv.store import KeyRange
from raftnode.kv.watch import WatchHub
from raftnode.metrics import NodeMetrics
from raftnode.node import NotLeader, OutcomeUnknown, Unavailable
from raftnode.timing import ChangeNotifier
from raftnode.tls import ServerTls

log = logging.getLogger(__name__)
access_log = logging.getLogger("raftnode.http.access")

# How often a forwarded request checks that the leader it went to still speaks.
FORWARD_WATCH_SECONDS = 0.02


@dataclass(frozen=True, slots=True)
class ClientApiSettings:
    node_id: int
    limits: Limits
    request_timeout: float
    member_clients: dict[int, Address]
    """Each member's client API address, for forwarding writes to the leader."""
    watch: Watch = dataclasses.field(default_factory=Watch)


@dataclass(slots=True)
class _Answer:
    response: Response
    outcome: str
    """The metrics label: ``ok``, ``forwarded`` or the error code."""


@dataclass(slots=True)
class _ForwardAttempts:
    """What one client request's attempts at reaching a leader have done so far."""

    maybe_sent: bool = False
    """An attempt may have reached a leader (a keyed write, sent again after no answer came).
    From then on a refusal (503, 507) speaks only for a later attempt: the first may still
    apply, so the request's answer is 504 (outcome unknown), never "nothing was done"."""


# Answers that mean "this attempt was refused before it was proposed".
REFUSED_BEFORE_PROPOSAL = frozenset({503, 507})

MAYBE_SENT_MESSAGE = (
    "the write was forwarded to a leader that gave no answer, and it cannot be taken now; "
    "it may still apply: send it again with the same Idempotency-Key to learn its outcome"
)


_Run = Callable[[Request, float], Awaitable[_Answer]]
_Route = tuple[str, str, _Run]
"""(kind: write, read or other; the metrics label; the handler, given the request's deadline)."""


def _dumps(obj: Any) -> bytes:
    # backslashreplace: a lone surrogate (echoed from an invalid request) becomes its JSON
    # escape, exactly what ensure_ascii would write, instead of failing the answer.
    return compact_json(obj).encode("utf-8", "backslashreplace")


def json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, _dumps(obj), headers or {})


ERROR_HEADER = "X-Raftnode-Error"
"""Every error answer names its code in this header too, for balancers that route on it
without reading the body (roles/haproxy's keyed write backend)."""


def error_response(err: ApiError) -> Response:
    headers = dict(err.headers)
    headers[ERROR_HEADER] = str(err.code)
    if err.retry_after is not None:
        headers["Retry-After"] = str(err.retry_after)
    return json_response(err.status, err.body(), headers)


def refusal(status: int, code: str, message: str) -> Response:
    """The answer to a request the connection itself refuses (malformed, too large)."""
    return error_response(ApiError(status, ErrorCode(code), message))


class ClientApi:
    """Routes requests to the key-value service: ``/kv``, ``/kv/{key}``, ``/txn``, ``/watch``
    and ``/lease``. ``lessor`` expires leases: its owner starts it (the server does)."""

    def __init__(
        self,
        service: KeyValueService,
        settings: ClientApiSettings,
        metrics: NodeMetrics,
        *,
        auth: ClientAuth | None = None,
        tls: ServerTls | None = None,
        lessor: Lessor | None = None,
    ) -> None:
        self.service = service
        self.auth = auth
        """Who may do what; None: every request is allowed (embedded use, tests)."""
        self.tls = tls
        self.settings = settings
        self.limits = settings.limits
        self.metrics = metrics
        self._timers: dict[tuple[str, str, str], Any] = {}
        self.admin = AdminApi(
            service, self._forward_admin, settings.request_timeout, settings.member_clients
        )
        self._connections: weakref.WeakSet[HttpConnection] = weakref.WeakSet()
        self._leaders = LeaderConnections(lambda: tls.client if tls is not None else None)
        self._answered = ChangeNotifier()
        """Told whenever a connection has answered all it had (shutdown waits on it)."""
        """Kept-alive connections to the leader for forwarded requests."""
        self._connection_limits = ConnectionLimits.from_config(
            self.limits, max_body_bytes=2 * self.limits.max_request_bytes
        )
        self.watches = WatchHub(
            service.node,
            service.store,
            buffer_events=settings.watch.buffer_events,
            max_watchers=settings.watch.max_watchers,
            on_sent=metrics.watch_events_sent.inc,
            on_cancelled=metrics.watch_cancelled,
        )
        self.leases = LeaseApi(
            lessor or Lessor(service), self._forward_admin, json_response, self.limits
        )
        self.gate = ConnectionGate(
            self.limits.max_connections, self.limits.max_connections_per_address
        )

    async def serve(self, address: Address) -> asyncio.Server:
        """Listen on ``address``; the returned server stops accepting when closed."""
        loop = asyncio.get_running_loop()
        if self.tls is None:
            return await loop.create_server(
                self._connection, address.host or None, address.port, reuse_address=True
            )
        # A handshake is not yet a connection the gate counts: bound it like a header block.
        return await loop.create_server(
            self._connection,
            address.host or None,
            address.port,
            reuse_address=True,
            ssl=self.tls.front,
            ssl_handshake_timeout=self.limits.header_timeout_seconds,
        )

    async def close_connections(self, timeout: float) -> bool:
        """Let requests in flight finish (bounded by ``timeout``), then close every connection;
        False when some were still busy."""
        deadline = asyncio.get_running_loop().time() + timeout
        self.watches.close("the node is shutting down")
        while any(c.busy for c in self._connections):
            if not await self._answered.wait(deadline):
                break
        idle = not any(c.busy for c in self._connections)
        for connection in list(self._connections):
            connection.close()
        self._leaders.close()
        return idle

    def _connection(self) -> HttpConnection:
        """A protocol instance for one accepted connection."""
        connection = HttpConnection(
            self.handle,
            refusal,
            self._connection_limits,
            wall_clock=time.time,
            log_request=_log_request,
            gate=self.gate,
            count_refusal=self._count_refusal,
            on_answered=self._answered.notify,
        )
        self._connections.add(connection)
        return connection

    def _count_refusal(self, reason: Refusal) -> None:
        self.metrics.http_refusals.labels(listener="client", reason=reason.value).inc()

    async def handle(self, request: Request) -> Response:
        deadline = time.monotonic() + self.settings.request_timeout
        started = time.monotonic()
        if self.auth is not None:
            try:
                refused = self.auth.check(request, self.limits)
            except ApiError as e:
                refused = e
            if refused is not None:
                return error_response(refused)
        if self.service.node.stopping:
            return error_response(
                unavailable("this node is shutting down; send requests to another member")
            )
        membership = self.service.node.membership
        if membership in ("removed", "not_joined"):
            return error_response(
                unavailable(
                    f"this node is not a member of the cluster ({membership.replace('_', ' ')}); "
                    "send requests to a member"
                )
            )
        kind, label, run = self._route(request)
        try:
            answer = await run(request, deadline)
        except ApiError as e:
            answer = _Answer(error_response(e), str(e.code))
        if kind in ("write", "read"):
            self._timer(kind, label, answer.outcome).observe(time.monotonic() - started)
        return answer.response

    def _timer(self, kind: str, label: str, outcome: str) -> Any:
        """The latency histogram of one (kind, label, outcome), looked up once: prometheus'
        ``labels()`` costs more than the ``observe`` itself on a hot path. The labels come
        from fixed sets (operations, consistency levels, outcome codes), so this stays small."""
        key = (kind, label, outcome)
        timer = self._timers.get(key)
        if timer is None:
            if kind == "write":
                timer = self.metrics.write_seconds.labels(op=label, outcome=outcome)
            else:
                timer = self.metrics.read_seconds.labels(consistency=label, outcome=outcome)
            self._timers[key] = timer
        return timer

    # -- routing -----------------------------------------------------------------------------

    def _route(self, request: Request) -> _Route:
        """(kind, metrics label, handler); refusals are handlers that raise."""
        path, method = request.path, request.method
        if self.admin.handles(path):
            return "admin", "", self._admin
        if path in ("/kv", "/kv/"):
            if method == "POST":
                return "write", "put", self._post
            if method == "GET":
                consistency = _consistency_label(request)
                return "read", consistency, self._list
            return "other", "", _method_not_allowed(method, path, "GET, POST")
        if path.startswith("/kv/") and len(path) > 4:
            if method == "GET":
                return "read", _consistency_label(request), self._get
            if method == "PUT":
                return "write", "put", self._put
            if method == "DELETE":
                return "write", "delete", self._delete
            return "other", "", _method_not_allowed(method, path, "GET, PUT, DELETE")
        if path == "/txn":
            if method == "POST":
                return "write", "txn", self._txn
            return "other", "", _method_not_allowed(method, path, "POST")
        if path == "/watch":
            if method == "GET":
                return "other", "", self._watch
            return "other", "", _method_not_allowed(method, path, "GET")
        if is_lease_path(path):
            label = self.leases.label(request)
            return ("other" if label == "lease_read" else "write"), label, self._lease
        return "other", "", _no_route(path)

    # -- admin -------------------------------------------------------------------------------

    async def _admin(self, request: Request, deadline: float) -> _Answer:
        response = await self.admin.handle(request)
        return _Answer(response, "ok" if response.status < 400 else str(response.status))

    async def _lease(self, request: Request, deadline: float) -> _Answer:
        response = await self.leases.handle(request, deadline)
        return _Answer(response, "ok" if response.status < 400 else str(response.status))

    async def _forward_admin(
        self, request: Request, leader_id: int, deadline: float
    ) -> Response | None:
        answer = await self._forward(request, leader_id, deadline, _ForwardAttempts())
        return answer.response if answer is not None else None

    # -- writes ------------------------------------------------------------------------------

    async def _post(self, request: Request, deadline: float) -> _Answer:
        requests.check_params(list(request.query), set())
        cmd = requests.put_from_post(request.body, self.limits)
        return await self._write(request, cmd, deadline)

    async def _put(self, request: Request, deadline: float) -> _Answer:
        requests.check_params(list(request.query), set())
        cmd = requests.put_from_put(request.path[4:], request.body, self.limits)
        return await self._write(request, cmd, deadline)

    async def _delete(self, request: Request, deadline: float) -> _Answer:
        requests.check_params(list(request.query), {"prev_value", "prev_revision"})
        cmd = requests.delete_command(
            request.path[4:],
            request.body,
            request.param("prev_value"),
            self.limits,
            request.param("prev_revision"),
        )
        return await self._write(request, cmd, deadline)

    async def _txn(self, request: Request, deadline: float) -> _Answer:
        requests.check_params(list(request.query), set())
        txn = requests.txn_from_post(request.body, self.limits)
        return await self._write(request, txn, deadline)

    async def _write(self, request: Request, cmd: Command | Txn, deadline: float) -> _Answer:
        request_id = requests.idempotency_key(request.headers.get(IDEMPOTENCY_HEADER.lower()))
        if request_id is not None:
            cmd = dataclasses.replace(cmd, request_id=request_id, stamp=time.time())
        attempts = _ForwardAttempts()
        try:
            while True:
                try:
                    result = await self.service.write(cmd, deadline)
                    break
                except NotLeader as e:
                    forwarded = await self._forward(request, e.leader_id, deadline, attempts)
                    if forwarded is not None:
                        return forwarded
                    # Leadership moved to this node while forwarding: propose here.
                except Unavailable:
                    # Sent again after an attempt that may have reached a leader: its key keeps
                    # it from applying twice, so an election still under way is waited out
                    # (until the deadline) rather than answered 504 at once.
                    if not attempts.maybe_sent or not await self.service.node.changed(deadline):
                        raise
        except (Unavailable, DiskFull, UpgradeInProgress) as e:
            if attempts.maybe_sent:
                raise outcome_unknown(f"{MAYBE_SENT_MESSAGE} (here: {e})") from e
            if isinstance(e, DiskFull):
                raise disk_full(e.free, e.minimum) from e
            if isinstance(e, UpgradeInProgress):
                raise upgrade_in_progress(str(e)) from e
            raise unavailable(f"{e}; retry shortly") from e
        except OutcomeUnknown as e:
            raise outcome_unknown(f"{e}; read the key to learn whether it was written") from e
        if isinstance(cmd, Txn):
            assert isinstance(result, TxnResult)
            return self._txn_answer(result)
        assert isinstance(result, CommandResult)
        return self._write_answer(cmd, result)

    def _txn_answer(self, result: TxnResult) -> _Answer:
        headers = {"X-Raftnode-Revision": str(result.revision)}
        if result.replayed:
            headers[REPLAYED_HEADER] = "true"
        if result.error is None:
            body = {
                "succeeded": result.succeeded,
                "revision": result.revision,
                "results": [_txn_op_answer(r) for r in result.results],
            }
            return _Answer(json_response(200, body, headers), "ok")
        if result.error == Outcome.IDEMPOTENCY_KEY_REUSED:
            raise idempotency_key_reused(None)
        if result.error == Outcome.QUOTA_EXCEEDED:
            self.metrics.quota_refused()
            raise quota_exceeded(None, self.service.store.max_store_bytes)
        raise ApiError(500, ErrorCode.INTERNAL, f"the transaction failed to apply ({result.error})")

    def _write_answer(self, cmd: Command, result: CommandResult) -> _Answer:
        headers = {"X-Raftnode-Revision": str(result.revision)}
        if result.replayed:
            headers[REPLAYED_HEADER] = "true"
        if result.ok:
            body: dict[str, Any] = {"ok": True, "key": cmd.key, "revision": result.revision}
            if cmd.op == "put":
                body["created"] = not result.existed
                if result.key_revisions is not None:
                    body.update(_revisions(result.key_revisions))
            if result.prev_value is not None:
                body["prev_value"] = result.prev_value
            if cmd.lease is not None:
                body["lease"] = cmd.lease
            return _Answer(json_response(200, body, headers), "ok")
        if result.error == Outcome.CAS_MISMATCH:
            compared = "prev_value" if cmd.cas else ""
            if cmd.prev_revision is not None:
                compared = f"{compared} or prev_revision" if compared else "prev_revision"
            conflict: dict[str, Any] = {
                "error": ErrorCode.CAS_MISMATCH,
                "message": f"the key's current state does not match {compared}; nothing was "
                "written",
                "key": cmd.key,
                "current_value": result.current_value,
                "exists": result.existed,
            }
            if result.key_revisions is not None:
                conflict.update(_revisions(result.key_revisions))
            return _Answer(json_response(409, conflict, headers), "cas_mismatch")
        if result.error == Outcome.NOT_FOUND:
            raise not_found(cmd.key)
        if result.error == Outcome.LEASE_NOT_FOUND and cmd.lease is not None:
            raise lease_not_found(cmd.lease)
        if result.error == Outcome.IDEMPOTENCY_KEY_REUSED:
            raise idempotency_key_reused(cmd.key)
        if result.error == Outcome.QUOTA_EXCEEDED:
            self.metrics.quota_refused()
            raise quota_exceeded(cmd.key, self.service.store.max_store_bytes)
        raise ApiError(500, ErrorCode.INTERNAL, f"the command failed to apply ({result.error})")

    async def _forward(
        self, request: Request, leader_id: int, deadline: float, attempts: _ForwardAttempts
    ) -> _Answer | None:
        """Relay the request to the leader; None when this node became the leader meanwhile
        (``attempts`` then tells the caller whether an attempt may have reached a leader)."""
        hops_text = request.headers.get(HOPS_HEADER.lower(), "0")
        hops = int(hops_text) if hops_text.isdigit() else MAX_HOPS
        node = self.service.node
        while True:
            remaining = deadline - time.monotonic()
            addr = self.settings.member_clients.get(leader_id)
            if hops >= MAX_HOPS or addr is None or remaining <= 0:
                if attempts.maybe_sent:
                    raise outcome_unknown(
                        "the write was forwarded to the leader and no answer came back in "
                        "time; send it again with the same Idempotency-Key to learn its outcome"
                    )
                raise unavailable(
                    f"the leader (node {leader_id}) could not be reached; retry shortly"
                )
            # Forward only to the leader this node knows, still connected and still heard from.
            # Otherwise (an election, a crashed leader, one cut off) forwarding could hang or
            # end in a reset with an unknown outcome: wait for a reconnect, a heartbeat or a
            # new leader instead.
            if (
                node.leader_id == leader_id
                and node.peer_connected(leader_id)
                and node.leader_recently_heard()
            ):
                answer, sent = await self._forward_once(request, addr, leader_id, hops, remaining)
                if answer is None:
                    attempts.maybe_sent = attempts.maybe_sent or sent
                elif (
                    not attempts.maybe_sent or answer.response.status not in REFUSED_BEFORE_PROPOSAL
                ):
                    return answer
                elif answer.response.status != 503 or deadline <= time.monotonic():
                    raise outcome_unknown(
                        f"{MAYBE_SENT_MESSAGE} (node {leader_id} answered {answer.response.status})"
                    )
                # else: the next leader is not ready to take it yet (an election, a leader
                # not yet committing in its term). The key makes sending again safe: wait for
                # a change and send again, until the deadline (then 504 above).
            await node.changed(deadline)
            if node.is_leader:
                return None
            leader_id = node.leader_id or leader_id

    async def _forward_once(
        self, request: Request, leader: Address, leader_id: int, hops: int, timeout: float
    ) -> tuple[_Answer | None, bool]:
        """One attempt at the leader: (its answer, True), or (None, whether the request may
        have reached it) when sending again is safe (nothing was sent, or the write carries
        an idempotency key)."""
        key = request.headers.get(IDEMPOTENCY_HEADER.lower())
        fetch = asyncio.ensure_future(
            self._leaders.forward(
                leader.host,
                leader.port,
                request.method,
                request.raw_path,
                request.body,
                hops,
                timeout,
                key,
                request.headers.get("authorization"),
            )
        )
        try:
            resp = await self._while_leader_speaks(fetch, leader_id, keyed=bool(key))
        except ForwardNotSent:
            self.metrics.forwarded.labels(outcome="not_sent").inc()
            return None, False  # the leader is probably gone: wait for the cluster to name another
        except ForwardUnknown as e:
            self.metrics.forwarded.labels(outcome="unknown").inc()
            if key:
                # The leader keeps the key's first outcome: sending it again (to whoever leads
                # next) cannot apply it twice, and answers what happened.
                return None, True
            raise outcome_unknown(
                f"the write was forwarded to node {leader_id} but no answer came back ({e}); "
                "read the key to learn whether it was written"
            ) from e
        self.metrics.forwarded.labels(outcome="ok").inc()
        headers = {k: v for k, v in resp.headers.items() if k != "Content-Type"}
        headers["X-Raftnode-Forwarded-To"] = str(leader_id)
        content_type = resp.headers.get("Content-Type", "application/json")
        return _Answer(Response(resp.status, resp.body, headers, content_type), "forwarded"), True

    async def _while_leader_speaks(
        self, fetch: asyncio.Future[ForwardedResponse], leader_id: int, keyed: bool
    ) -> ForwardedResponse:
        """The forwarded request's answer, unless this node concludes first that no leader
        is left: then the request is given up (``ForwardUnknown``) instead of waited on until
        the request timeout, since a leader cut off by the network never answers. The verdict
        is Raft's own (an election timeout of silence, or a campaign), not a few missed
        heartbeats: a leader starved of CPU for a moment is still leading and answers, and
        giving its write up would turn a success into a 504. (A leader that hands over, e.g.
        on this very request, still answers: a new leader speaking is fine.)

        A ``keyed`` write is given up as soon as this node follows (or is) another leader:
        sending it again cannot apply it twice, and the next leader answers it, while the one
        it went to may be stopped or cut off without this node ever campaigning (it only
        voted, then heard the winner)."""
        node = self.service.node
        while True:
            done, _ = await asyncio.wait({fetch}, timeout=FORWARD_WATCH_SECONDS)
            if done:
                return fetch.result()
            if node.leader_presumed_gone():
                fetch.cancel()
                raise ForwardUnknown(f"node {leader_id} went quiet with the request in flight")
            if keyed and node.leader_id not in (leader_id, 0):
                fetch.cancel()
                raise ForwardUnknown(
                    f"node {node.leader_id} leads now, with the request in flight at node "
                    f"{leader_id}"
                )

    # -- reads -------------------------------------------------------------------------------

    async def _read_barrier(self, consistency: Consistency, deadline: float) -> None:
        try:
            await self.service.read_barrier(consistency, deadline)
        except Unavailable as e:
            raise unavailable(f"{e}; retry, or use ?consistency=stale") from e

    async def _get(self, request: Request, deadline: float) -> _Answer:
        requests.check_params(list(request.query), {"consistency"})
        consistency = requests.consistency(request.param("consistency"))
        key = requests.check_key(request.path[4:], self.limits)
        await self._read_barrier(consistency, deadline)
        record = self.service.store.get(key)
        if record is None:
            raise not_found(key)
        headers = {"X-Raftnode-Revision": str(record.mod_revision)}
        body: dict[str, Any] = {"value": record.value, **_revisions(record.revisions)}
        leases = self.service.store.leases
        lease = leases.lease_of(key) if leases else None
        if lease is not None:
            body["lease"] = lease
        return _Answer(json_response(200, body, headers), "ok")

    async def _list(self, request: Request, deadline: float) -> _Answer:
        requests.check_params(
            list(request.query),
            {"prefix", "start", "end", "limit", "consistency", "start_after", "count_only"},
        )
        consistency = requests.consistency(request.param("consistency"))
        limit = requests.list_limit(request.param("limit"))
        selected = requests.key_range(
            request.param("prefix"), request.param("start"), request.param("end"), self.limits
        )
        count_only = requests.flag(request.param("count_only"), "count_only")
        start_after = request.param("start_after")
        if start_after is not None:
            requests.check_key(start_after, self.limits, where="start_after")
        await self._read_barrier(consistency, deadline)
        store = self.service.store
        headers = {"X-Raftnode-Revision": str(store.revision)}
        if count_only:
            counted = {"count": store.count(selected, start_after), "revision": store.revision}
            return _Answer(json_response(200, counted, headers), "ok")
        items, more = store.page(
            "", limit, self.limits.max_list_bytes, start_after, key_range=selected
        )
        body = {
            "items": [{"key": k, "value": r.value, **_revisions(r.revisions)} for k, r in items],
            "count": len(items),
            "more": more,
            "revision": store.revision,
        }
        return _Answer(json_response(200, body, headers), "ok")

    async def _watch(self, request: Request, deadline: float) -> _Answer:
        """``GET /watch``: Server-Sent Events from this node's applied state (any node)."""
        requests.check_params(list(request.query), WATCH_PARAMS)
        key = request.param("key")
        if key is not None:
            if any(request.param(p) is not None for p in ("prefix", "start", "end")):
                raise bad_request(
                    "key selects one key: it does not combine with prefix, start or end",
                    ErrorCode.BAD_PARAM,
                )
            requests.check_key(key, self.limits, where="key")
            selected = KeyRange.between(key, key + "\0")
        else:
            selected = requests.key_range(
                request.param("prefix"), request.param("start"), request.param("end"), self.limits
            )
        watcher = open_watch(self.watches, selected, start_revision(request))
        stream = event_stream(
            watcher, self.settings.watch.progress_seconds, self.service.store.revision
        )
        return _Answer(stream, "ok")


def _revisions(r: KeyRevisions) -> dict[str, int | None]:
    """A key's revision fields as answered (``version`` null before the store counts them)."""
    return {
        "create_revision": r.create_revision,
        "mod_revision": r.mod_revision,
        "version": r.version,
    }


def _txn_op_answer(r: TxnOpResult) -> dict[str, Any]:
    """One operation's result in a ``POST /txn`` answer."""
    if r.op == "get":
        body: dict[str, Any] = {"op": "get", "key": r.key, "found": r.found}
        if r.found:
            body["value"] = r.value
            body.update(_revisions(r.revisions))
        return body
    if r.op == "put":
        body = {"op": "put", "key": r.key, "created": not r.found, **_revisions(r.revisions)}
    else:
        body = {"op": "delete", "key": r.key, "deleted": r.found}
    if r.value is not None:
        body["prev_value"] = r.value
    return body


_CONSISTENCY_LEVELS = frozenset(Consistency)


def _consistency_label(request: Request) -> str:
    """The metrics label for a read: its consistency when valid (validated again later)."""
    value = request.param("consistency") or Consistency.LINEARIZABLE
    return value if value in _CONSISTENCY_LEVELS else "invalid"


def _method_not_allowed(method: str, path: str, allowed: str) -> _Run:
    async def refuse(request: Request, deadline: float) -> _Answer:
        raise method_not_allowed(method, path, allowed)

    return refuse


def _no_route(path: str) -> _Run:
    async def refuse(request: Request, deadline: float) -> _Answer:
        raise ApiError(404, ErrorCode.NO_ROUTE, f"no endpoint {path}; see /kv")

    return refuse


def _log_request(request: Request, response: Response) -> None:
    """Access log: 5xx at WARNING, the rest at DEBUG."""
    level = logging.WARNING if response.status >= 500 else logging.DEBUG
    if access_log.isEnabledFor(level):
        loop_ms = 1000 * (asyncio.get_running_loop().time() - request.started)
        access_log.log(
            level,
            "request",
            extra={
                "fields": {
                    "method": request.method,
                    "uri": request.raw_path,
                    "status": response.status,
                    "ms": round(loop_ms, 2),
                    "remote": request.remote,
                }
            },
        )
