"""The client key-value API (Tornado handlers); see ``docs/openapi.yaml``.

Every request gets one deadline (``request_timeout``) and every wait inside it is bounded by
that deadline. Writes at a follower are forwarded to the leader. Answers are compact JSON.

As Tornado intends: handlers raise ``ApiError`` and ``write_error`` renders it, in one place;
``on_finish`` records each request's latency and outcome.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tornado.web

from raftnode.config import Address, Limits
from raftnode.consistency import Consistency
from raftnode.http import requests
from raftnode.http.errors import (
    ApiError,
    ErrorCode,
    not_found,
    outcome_unknown,
    too_large,
    unavailable,
)
from raftnode.http.forward import (
    HOPS_HEADER,
    MAX_HOPS,
    ForwardedResponse,
    ForwardNotSent,
    ForwardUnknown,
    forward,
)
from raftnode.kv.commands import Command, CommandResult
from raftnode.kv.service import KeyValueService
from raftnode.logs import log_client_request
from raftnode.metrics import NodeMetrics
from raftnode.node import NotLeader, OutcomeUnknown, Unavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClientApiSettings:
    node_id: int
    limits: Limits
    request_timeout: float
    member_clients: dict[int, Address]
    """Every member's client API address, for forwarding writes to whichever leads."""


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _error_for_status(status_code: int, exc: BaseException | None, reason: str) -> ApiError:
    """An ``ApiError`` for what Tornado itself refused (405, a bad body) or an uncaught bug."""
    if isinstance(exc, tornado.web.HTTPError) and exc.log_message:
        message = exc.log_message % exc.args if exc.args else exc.log_message
    else:
        message = reason
    if status_code == 405:
        code = ErrorCode.METHOD_NOT_ALLOWED
    elif status_code >= 500:
        code = ErrorCode.INTERNAL
    else:
        code = ErrorCode.BAD_REQUEST
    return ApiError(status_code, code, message)


class _ApiHandler(tornado.web.RequestHandler):
    def initialize(
        self, service: KeyValueService, settings: ClientApiSettings, metrics: NodeMetrics
    ) -> None:
        self.service = service
        self.api = settings
        self.metrics = metrics
        self.started = time.monotonic()
        self.deadline = self.started + settings.request_timeout
        self.outcome = "error"
        self.latency: Callable[..., Any] | None = None
        """The labelled histogram this request's latency goes to (set by ``measure_*``)."""

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")

    def measure_write(self, op: str) -> None:
        self.latency = functools.partial(self.metrics.write_seconds.labels, op=op)

    def measure_read(self, consistency: Consistency) -> None:
        self.latency = functools.partial(
            self.metrics.read_seconds.labels, consistency=str(consistency)
        )

    def on_finish(self) -> None:
        if self.latency is not None:
            self.latency(outcome=self.outcome).observe(time.monotonic() - self.started)

    def send_json(self, status: int, obj: Any, *, outcome: str = "ok") -> None:
        self.outcome = outcome
        self.set_status(status)
        self.finish(_dumps(obj))

    def render_error(self, err: ApiError) -> None:
        """The one place an error answer is written."""
        if err.retry_after is not None:
            self.set_header("Retry-After", str(err.retry_after))
        self.send_json(err.status_code, err.body(), outcome=err.code)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if not isinstance(exc, ApiError):
            exc = _error_for_status(status_code, exc, self._reason)
        self.render_error(exc)

    def param(self, name: str) -> str | None:
        values = self.request.query_arguments.get(name)
        if not values:
            return None
        return values[-1].decode("utf-8", "replace")

    def check_params(self, allowed: set[str]) -> None:
        requests.check_params(list(self.request.query_arguments), allowed)

    async def read_barrier(self, consistency: Consistency) -> None:
        try:
            await self.service.read_barrier(consistency, self.deadline)
        except Unavailable as e:
            raise unavailable(f"{e}; retry, or use ?consistency=stale") from e

    async def commit(self, cmd: Command) -> None:
        """Commit ``cmd`` (here, or through the leader) and answer with its result."""
        result = await self._apply_or_forward(cmd)
        if result is None:
            return  # the leader's answer was relayed
        self.set_header("X-Raftnode-Revision", str(result.revision))
        self._send_result(cmd, result)

    async def _apply_or_forward(self, cmd: Command) -> CommandResult | None:
        """The command's result once applied here; None once the leader's answer was relayed."""
        try:
            while True:
                try:
                    return await self.service.write(cmd, self.deadline)
                except NotLeader as e:
                    if await self._forward(e.leader_id):
                        return None
                    # Leadership moved to this node while forwarding: propose here.
        except Unavailable as e:
            raise unavailable(f"{e}; retry shortly") from e
        except OutcomeUnknown as e:
            raise outcome_unknown(f"{e}; read the key to learn whether it was written") from e

    def _send_result(self, cmd: Command, result: CommandResult) -> None:
        if result.ok:
            body: dict[str, Any] = {"ok": True, "key": cmd.key, "revision": result.revision}
            if cmd.op == "put":
                body["created"] = not result.existed
            if result.prev_value is not None:
                body["prev_value"] = result.prev_value
            self.send_json(200, body)
        elif result.error == ErrorCode.CAS_MISMATCH:
            self.render_error(
                ApiError(
                    409,
                    ErrorCode.CAS_MISMATCH,
                    "the key's current value does not match prev_value; nothing was written",
                    extra={
                        "key": cmd.key,
                        "current_value": result.current_value,
                        "exists": result.existed,
                    },
                )
            )
        elif result.error == ErrorCode.NOT_FOUND:
            self.render_error(not_found(cmd.key))
        else:
            self.render_error(
                ApiError(500, ErrorCode.INTERNAL, f"the command failed to apply: {result.error}")
            )

    async def _forward(self, leader_id: int) -> bool:
        """Relay the request to the leader: True once its answer was relayed, False when this
        node became the leader meanwhile (the caller proposes here)."""
        hops_text = self.request.headers.get(HOPS_HEADER, "0")
        hops = int(hops_text) if hops_text.isdigit() else MAX_HOPS
        while True:
            remaining = self.deadline - time.monotonic()
            addr = self.api.member_clients.get(leader_id)
            if hops >= MAX_HOPS or addr is None or remaining <= 0:
                raise unavailable(
                    f"the leader (node {leader_id}) could not be reached; retry shortly"
                )
            # With no stream to the leader it has probably crashed: forwarding now could end in a
            # reset with an unknown outcome, so wait for a reconnect or a new leader instead.
            if self.service.node.peer_connected(leader_id):
                url = f"http://{addr.host}:{addr.port}{self.request.uri}"
                try:
                    resp = await forward(
                        url, self.request.method or "POST", self.request.body, hops, remaining
                    )
                except ForwardNotSent:
                    self.metrics.forwarded.labels(outcome="not_sent").inc()
                except ForwardUnknown as e:
                    self.metrics.forwarded.labels(outcome="unknown").inc()
                    raise outcome_unknown(
                        f"the write was forwarded to node {leader_id} but no answer came back "
                        f"({e}); read the key to learn whether it was written"
                    ) from e
                else:
                    self.metrics.forwarded.labels(outcome="ok").inc()
                    self._relay(resp, leader_id)
                    return True
            next_leader = await self._leader_after_a_pause(leader_id)
            if next_leader is None:
                return False
            leader_id = next_leader

    async def _leader_after_a_pause(self, leader_id: int) -> int | None:
        """Give the cluster a moment to reconnect or name another leader; None if it is us."""
        await asyncio.sleep(min(0.05, max(0.0, self.deadline - time.monotonic())))
        node = self.service.node
        return None if node.is_leader else (node.leader_id or leader_id)

    def _relay(self, resp: ForwardedResponse, leader_id: int) -> None:
        for k, v in resp.headers.items():
            self.set_header(k, v)
        self.set_header("X-Raftnode-Forwarded-To", str(leader_id))
        self.outcome = "forwarded"
        self.set_status(resp.status)
        self.finish(resp.body)


class KeyCollectionHandler(_ApiHandler):
    """``POST /kv`` writes a key; ``GET /kv?prefix=&limit=`` lists keys."""

    async def post(self) -> None:
        self.measure_write("put")
        self.check_params(set())
        await self.commit(requests.put_from_post(self.request.body, self.api.limits))

    async def get(self) -> None:
        self.check_params({"prefix", "limit", "consistency"})
        consistency = requests.consistency(self.param("consistency"))
        self.measure_read(consistency)
        limit = requests.list_limit(self.param("limit"))
        prefix = self.param("prefix") or ""
        if len(prefix.encode()) > self.api.limits.max_key_bytes:
            raise too_large(f"prefix is longer than {self.api.limits.max_key_bytes} bytes")
        await self.read_barrier(consistency)
        store = self.service.store
        items = store.list(prefix, limit + 1)
        self.set_header("X-Raftnode-Revision", str(store.revision))
        self.send_json(
            200,
            {
                "items": [
                    {"key": k, "value": r.value, "mod_revision": r.mod_revision}
                    for k, r in items[:limit]
                ],
                "count": len(items[:limit]),
                "more": len(items) > limit,
                "revision": store.revision,
            },
        )


class KeyHandler(_ApiHandler):
    """``GET``, ``PUT`` and ``DELETE /kv/{key}``."""

    async def get(self, key: str) -> None:
        self.check_params({"consistency"})
        consistency = requests.consistency(self.param("consistency"))
        self.measure_read(consistency)
        requests.check_key(key, self.api.limits)
        await self.read_barrier(consistency)
        record = self.service.store.get(key)
        if record is None:
            raise not_found(key)
        self.set_header("X-Raftnode-Revision", str(record.mod_revision))
        self.send_json(200, {"value": record.value})

    async def put(self, key: str) -> None:
        self.measure_write("put")
        self.check_params(set())
        await self.commit(requests.put_from_put(key, self.request.body, self.api.limits))

    async def delete(self, key: str) -> None:
        self.measure_write("delete")
        self.check_params({"prev_value"})
        await self.commit(
            requests.delete_command(
                key, self.request.body, self.param("prev_value"), self.api.limits
            )
        )


class NotFoundHandler(_ApiHandler):
    def prepare(self) -> None:
        raise ApiError(404, ErrorCode.NO_ROUTE, f"no endpoint {self.request.path}; see /kv")


def make_client_app(
    service: KeyValueService, settings: ClientApiSettings, metrics: NodeMetrics
) -> tornado.web.Application:
    args = {"service": service, "settings": settings, "metrics": metrics}
    return tornado.web.Application(
        [
            (r"/kv/?", KeyCollectionHandler, args),
            (r"/kv/(.+)", KeyHandler, args),
        ],
        default_handler_class=NotFoundHandler,
        default_handler_args=args,
        log_function=log_client_request,
    )
