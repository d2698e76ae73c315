"""The lease endpoints of the client API (``/lease``); see ``docs/openapi.yaml``.

Every lease request is answered by the leader (``raftnode.kv.lessor``): a follower forwards it,
as it forwards writes, since only the leader knows when a lease expires. Grant and revoke go
through the log; a keep-alive and the remaining TTL do not.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from raftnode.config import Limits
from raftnode.http import requests
from raftnode.http.connection import Request, Response
from raftnode.http.errors import (
    ApiError,
    ErrorCode,
    bad_request,
    method_not_allowed,
    outcome_unknown,
    unavailable,
    upgrade_in_progress,
)
from raftnode.http.requests import lease_id
from raftnode.kv.commands import MAX_LEASE_ID, Outcome
from raftnode.kv.lessor import (
    MAX_TTL_SECONDS,
    MIN_TTL_SECONDS,
    LeaseNotFound,
    LeaseRefused,
    LeaseStatus,
    Lessor,
)
from raftnode.kv.service import UpgradeInProgress
from raftnode.node import NotLeader, OutcomeUnknown, Unavailable

MAX_KEYS_SHOWN = 1000
"""``GET /lease/{id}`` names at most this many of the lease's keys (``key_count`` counts all)."""

Forward = Callable[[Request, int, float], Awaitable[Response | None]]
"""Relays a request to the leader; None when this node became the leader meanwhile."""
Respond = Callable[[int, Any], Response]


def lease_not_found(lease: int) -> ApiError:
    return ApiError(
        404,
        ErrorCode.LEASE_NOT_FOUND,
        f"lease {lease} does not exist (never granted, revoked, or expired)",
        extra={"id": lease},
    )


def is_lease_path(path: str) -> bool:
    return path in ("/lease", "/lease/") or path.startswith("/lease/")


class LeaseApi:
    """``POST /lease``, ``GET /lease``, ``GET|DELETE /lease/{id}``,
    ``POST /lease/{id}/keepalive``."""

    def __init__(self, lessor: Lessor, forward: Forward, respond: Respond, limits: Limits) -> None:
        self.lessor = lessor
        self._forward = forward
        self._respond = respond
        self.limits = limits

    def label(self, request: Request) -> str:
        """The metrics label of a lease request (write ops are named like ``put``)."""
        parts = request.path.strip("/").split("/")
        if request.method == "POST" and len(parts) == 1:
            return "lease_grant"
        if request.method == "POST" and len(parts) == 3 and parts[2] == "keepalive":
            return "lease_keepalive"
        if request.method == "DELETE":
            return "lease_revoke"
        return "lease_read"

    async def handle(self, request: Request, deadline: float) -> Response:
        requests.check_params(list(request.query), set())
        run = self._route(request)
        while True:
            try:
                return await run(request, deadline)
            except NotLeader as e:
                forwarded = await self._forward(request, e.leader_id, deadline)
                if forwarded is not None:
                    return forwarded
                # This node became the leader while forwarding: answer here.
            except LeaseNotFound as e:
                raise lease_not_found(e.lease) from e
            except LeaseRefused as e:
                raise _refused(e) from e
            except Unavailable as e:
                raise unavailable(f"{e}; retry shortly") from e
            except OutcomeUnknown as e:
                raise outcome_unknown(f"{e}; read the lease to learn whether it applied") from e
            except UpgradeInProgress as e:
                raise upgrade_in_progress(str(e)) from e

    def _route(self, request: Request) -> Callable[[Request, float], Awaitable[Response]]:
        parts = request.path.strip("/").split("/")
        method = request.method
        if len(parts) == 1:
            if method == "POST":
                return self._grant
            if method == "GET":
                return self._list
            raise method_not_allowed(method, request.path, "GET, POST")
        if len(parts) == 2:
            if method == "GET":
                return self._get
            if method == "DELETE":
                return self._revoke
            raise method_not_allowed(method, request.path, "GET, DELETE")
        if len(parts) == 3 and parts[2] == "keepalive":
            if method == "POST":
                return self._keep_alive
            raise method_not_allowed(method, request.path, "POST")
        raise ApiError(404, ErrorCode.NO_ROUTE, f"no endpoint {request.path}; see /lease")

    # -- handlers ----------------------------------------------------------------------------

    async def _grant(self, request: Request, deadline: float) -> Response:
        obj = requests.parse_body(request.body, self.limits)
        unknown = sorted(set(obj) - {"ttl", "id"})
        if unknown:
            raise bad_request(
                f"unknown field(s) {', '.join(unknown)}; allowed: id, ttl", ErrorCode.BAD_FIELD
            )
        ttl = obj.get("ttl")
        if type(ttl) is not int or not MIN_TTL_SECONDS <= ttl <= MAX_TTL_SECONDS:
            raise bad_request(
                f"ttl must be an integer number of seconds from {MIN_TTL_SECONDS} to "
                f"{MAX_TTL_SECONDS}, got {json.dumps(ttl)}",
                ErrorCode.BAD_VALUE,
            )
        # An absent id lets the leader pick one; an explicit null is not an id (400).
        lease = lease_id(obj["id"]) if "id" in obj else None
        status = await self.lessor.grant(ttl, lease, deadline)
        return self._respond(200, _status_body(status))

    async def _keep_alive(self, request: Request, deadline: float) -> Response:
        status = await self.lessor.keep_alive(_path_id(request), deadline)
        return self._respond(200, _status_body(status))

    async def _get(self, request: Request, deadline: float) -> Response:
        lease = _path_id(request)
        status = await self.lessor.time_to_live(lease, deadline)
        leases = self.lessor.service.store.leases
        assert leases is not None  # a lease was found, so the store keeps leases
        keys = leases.keys(lease, MAX_KEYS_SHOWN)
        body = {**_status_body(status), "keys": keys, "key_count": leases.key_count(lease)}
        return self._respond(200, body)

    async def _list(self, request: Request, deadline: float) -> Response:
        statuses = await self.lessor.all(deadline)
        return self._respond(
            200, {"leases": [_status_body(s) for s in statuses], "count": len(statuses)}
        )

    async def _revoke(self, request: Request, deadline: float) -> Response:
        lease = _path_id(request)
        revision = await self.lessor.revoke(lease, deadline)
        return self._respond(200, {"id": lease, "revoked": True, "revision": revision})


def _path_id(request: Request) -> int:
    text = request.path.strip("/").split("/")[1]
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise bad_request(
            f"lease id in the path must be an integer from 1 to {MAX_LEASE_ID}, got {text!r}",
            ErrorCode.BAD_PARAM,
        )
    return lease_id(int(text), "the lease id in the path")


def _status_body(status: LeaseStatus) -> dict[str, Any]:
    return {"id": status.lease, "ttl": round(status.remaining, 3), "granted_ttl": status.granted}


def _refused(e: LeaseRefused) -> ApiError:
    if e.outcome == Outcome.LEASE_EXISTS:
        return ApiError(409, ErrorCode.LEASE_EXISTS, str(e))
    if e.outcome == Outcome.TOO_MANY_LEASES:
        return ApiError(507, ErrorCode.TOO_MANY_LEASES, str(e))
    return ApiError(500, ErrorCode.INTERNAL, str(e))
