"""The client key-value API (Tornado handlers); see ``docs/openapi.yaml``.

Every request gets one deadline (``request_timeout``) and every wait inside it is bounded by
that deadline. Writes at a follower are forwarded to the leader. Answers are compact JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import tornado.web

from raftnode.config import Address, Limits
from raftnode.http import requests
from raftnode.http.errors import ApiError, outcome_unknown, too_large, unavailable
from raftnode.http.forward import HOPS_HEADER, MAX_HOPS, ForwardNotSent, ForwardUnknown, forward
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
    leader_clients: dict[int, Address]
    """Each member's client API address, for forwarding writes to the leader."""


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class _ApiHandler(tornado.web.RequestHandler):
    def initialize(
        self, service: KeyValueService, settings: ClientApiSettings, metrics: NodeMetrics
    ) -> None:
        self.service = service
        self.api = settings
        self.metrics = metrics
        self.deadline = time.monotonic() + settings.request_timeout

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")

    def send_json(self, status: int, obj: Any) -> None:
        self.set_status(status)
        self.finish(_dumps(obj))

    def send_error_json(self, err: ApiError) -> None:
        if err.retry_after is not None:
            self.set_header("Retry-After", str(err.retry_after))
        self.send_json(err.status, err.body())

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        else:
            message = self._reason
        code = "internal" if status_code >= 500 else "bad_request"
        if status_code == 405:
            code = "method_not_allowed"
        self.finish(_dumps({"error": code, "message": message}))

    def param(self, name: str) -> str | None:
        values = self.request.query_arguments.get(name)
        if not values:
            return None
        return values[-1].decode("utf-8", "replace")

    async def run_write(self, op: str, make_command: Any) -> None:
        started = time.monotonic()
        outcome = "error"
        try:
            cmd: Command = make_command()
            outcome = await self._write(cmd)
        except ApiError as e:
            outcome = e.code
            self.send_error_json(e)
        finally:
            self.metrics.write_seconds.labels(op=op, outcome=outcome).observe(
                time.monotonic() - started
            )

    async def _write(self, cmd: Command) -> str:
        try:
            while True:
                try:
                    result = await self.service.write(cmd, self.deadline)
                    break
                except NotLeader as e:
                    forwarded = await self._forward(e.leader_id)
                    if forwarded is not None:
                        return forwarded
                    # Leadership moved to this node while forwarding: propose here.
        except Unavailable as e:
            raise unavailable(f"{e}; retry shortly") from e
        except OutcomeUnknown as e:
            raise outcome_unknown(f"{e}; read the key to learn whether it was written") from e
        self.set_header("X-Raftnode-Revision", str(result.revision))
        self._send_result(cmd, result)
        return "ok" if result.ok else (result.error or "failed")

    def _send_result(self, cmd: Command, result: CommandResult) -> None:
        if result.ok:
            body: dict[str, Any] = {"ok": True, "key": cmd.key, "revision": result.revision}
            if cmd.op == "put":
                body["created"] = not result.existed
            if result.prev_value is not None:
                body["prev_value"] = result.prev_value
            self.send_json(200, body)
        elif result.error == "cas_mismatch":
            self.send_json(
                409,
                {
                    "error": "cas_mismatch",
                    "message": "the key's current value does not match prev_value; "
                    "nothing was written",
                    "key": cmd.key,
                    "current_value": result.current_value,
                    "exists": result.existed,
                },
            )
        elif result.error == "not_found":
            self.send_json(
                404,
                {
                    "error": "not_found",
                    "message": f"key {cmd.key!r} does not exist",
                    "key": cmd.key,
                },
            )
        else:
            self.send_json(
                500, {"error": result.error or "internal", "message": "the command failed to apply"}
            )

    async def _forward(self, leader_id: int) -> str | None:
        """Relay the request to the leader; None when this node became the leader meanwhile."""
        hops_text = self.request.headers.get(HOPS_HEADER, "0")
        hops = int(hops_text) if hops_text.isdigit() else MAX_HOPS
        while True:
            remaining = self.deadline - time.monotonic()
            addr = self.api.leader_clients.get(leader_id)
            if hops >= MAX_HOPS or addr is None or remaining <= 0:
                raise unavailable(
                    f"the leader (node {leader_id}) could not be reached; retry shortly"
                )
            node = self.service.node
            if not node.peer_connected(leader_id):
                # Our stream to the leader is down: it probably crashed. Forwarding now could
                # end in a reset with an unknown outcome; wait for a reconnect or a new leader.
                await asyncio.sleep(min(0.05, max(0.0, remaining)))
                if node.is_leader:
                    return None
                leader_id = node.leader_id or leader_id
                continue
            url = f"http://{addr.host}:{addr.port}{self.request.uri}"
            try:
                resp = await forward(
                    url, self.request.method or "POST", self.request.body, hops, remaining
                )
            except ForwardNotSent:
                self.metrics.forwarded.labels(outcome="not_sent").inc()
                # The leader is probably gone: wait for the cluster to name another one.
                await asyncio.sleep(min(0.05, max(0.0, self.deadline - time.monotonic())))
                if self.service.node.is_leader:
                    return None
                leader_id = self.service.node.leader_id or leader_id
                continue
            except ForwardUnknown as e:
                self.metrics.forwarded.labels(outcome="unknown").inc()
                raise outcome_unknown(
                    f"the write was forwarded to node {leader_id} but no answer came back ({e}); "
                    "read the key to learn whether it was written"
                ) from e
            self.metrics.forwarded.labels(outcome="ok").inc()
            for k, v in resp.headers.items():
                self.set_header(k, v)
            self.set_header("X-Raftnode-Forwarded-To", str(leader_id))
            self.set_status(resp.status)
            self.finish(resp.body)
            return "forwarded"

    async def run_read(self, consistency: str, read: Any) -> None:
        started = time.monotonic()
        outcome = "error"
        try:
            await self.service.read_barrier(consistency, self.deadline)
            outcome = read()
        except Unavailable as e:
            outcome = "unavailable"
            self.send_error_json(unavailable(f"{e}; retry, or use ?consistency=stale"))
        except ApiError as e:
            outcome = e.code
            self.send_error_json(e)
        finally:
            self.metrics.read_seconds.labels(consistency=consistency, outcome=outcome).observe(
                time.monotonic() - started
            )


class KeyCollectionHandler(_ApiHandler):
    """``POST /kv`` writes a key; ``GET /kv?prefix=&limit=`` lists keys."""

    async def post(self) -> None:
        try:
            requests.check_params(list(self.request.query_arguments), set())
        except ApiError as e:
            self.send_error_json(e)
            return
        await self.run_write(
            "put", lambda: requests.put_from_post(self.request.body, self.api.limits)
        )

    async def get(self) -> None:
        try:
            requests.check_params(
                list(self.request.query_arguments), {"prefix", "limit", "consistency"}
            )
            consistency = requests.consistency(self.param("consistency"))
            limit = requests.list_limit(self.param("limit"))
            prefix = self.param("prefix") or ""
            if len(prefix.encode()) > self.api.limits.max_key_bytes:
                raise too_large(f"prefix is longer than {self.api.limits.max_key_bytes} bytes")
        except ApiError as e:
            self.send_error_json(e)
            return

        def answer() -> str:
            items = self.service.store.list(prefix, limit + 1)
            more = len(items) > limit
            items = items[:limit]
            self.set_header("X-Raftnode-Revision", str(self.service.store.revision))
            self.send_json(
                200,
                {
                    "items": [
                        {"key": k, "value": r.value, "mod_revision": r.mod_revision}
                        for k, r in items
                    ],
                    "count": len(items),
                    "more": more,
                    "revision": self.service.store.revision,
                },
            )
            return "ok"

        await self.run_read(consistency, answer)


class KeyHandler(_ApiHandler):
    """``GET``, ``PUT`` and ``DELETE /kv/{key}``."""

    async def get(self, key: str) -> None:
        try:
            requests.check_params(list(self.request.query_arguments), {"consistency"})
            consistency = requests.consistency(self.param("consistency"))
            requests.check_key(key, self.api.limits)
        except ApiError as e:
            self.send_error_json(e)
            return

        def answer() -> str:
            record = self.service.store.get(key)
            if record is None:
                self.send_json(
                    404,
                    {"error": "not_found", "message": f"key {key!r} does not exist", "key": key},
                )
                return "not_found"
            self.set_header("X-Raftnode-Revision", str(record.mod_revision))
            self.send_json(200, {"value": record.value})
            return "ok"

        await self.run_read(consistency, answer)

    async def put(self, key: str) -> None:
        try:
            requests.check_params(list(self.request.query_arguments), set())
        except ApiError as e:
            self.send_error_json(e)
            return
        await self.run_write(
            "put", lambda: requests.put_from_put(key, self.request.body, self.api.limits)
        )

    async def delete(self, key: str) -> None:
        try:
            requests.check_params(list(self.request.query_arguments), {"prev_value"})
        except ApiError as e:
            self.send_error_json(e)
            return
        await self.run_write(
            "delete",
            lambda: requests.delete_command(
                key, self.request.body, self.param("prev_value"), self.api.limits
            ),
        )


class NotFoundHandler(_ApiHandler):
    def prepare(self) -> None:
        self.send_json(
            404, {"error": "no_route", "message": f"no endpoint {self.request.path}; see /kv"}
        )


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
