"""The admin API on the client port, under ``/admin/v1`` (etcdctl's ``member`` and
``move-leader`` as HTTP); see ``docs/openapi.yaml``.

Membership changes and leadership transfer are the leader's business: at a follower every admin
request is forwarded to the leader, as writes are. A change is answered after it committed and
applied here. One change at a time: a second one while the first is in flight gets 409. Every
route sits under one prefix so that an admin credential can guard them all once client
authentication exists.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from raftnode.config import Address
from raftnode.http.admin_compact import compact, requested_revision
from raftnode.http.connection import Request, Response, StreamedBody
from raftnode.http.errors import (
    ApiError,
    ErrorCode,
    bad_request,
    method_not_allowed,
    unavailable,
)
from raftnode.http.requests import decode_json_object
from raftnode.kv.service import KeyValueService
from raftnode.node import NotLeader, OutcomeUnknown, Unavailable
from raftnode.raft.confchange import check_addresses_unused, check_prev_index
from raftnode.raft.errors import ConfChangeError, LeaderNotReady
from raftnode.raft.types import ConfChangeOp

PREFIX = "/admin/v1"
CHANGE_TIMEOUT_FLOOR = 1.0

Forward = Callable[[Request, int, float], Awaitable[Response | None]]
"""Relays a request to the leader; None when this node became the leader meanwhile."""


def _json(status: int, obj: Any) -> Response:
    return Response(status, json.dumps(obj, separators=(",", ":")).encode())


class AdminApi:
    """Members (list, add as learner, promote, remove), leadership transfer and the history's
    compaction."""

    def __init__(
        self,
        service: KeyValueService,
        forward: Forward,
        request_timeout: float,
        member_clients: dict[int, Address],
    ) -> None:
        self.service = service
        self.node = service.node
        self.forward = forward
        self.request_timeout = request_timeout
        self.member_clients = member_clients
        """Every member's client API address (for ``raftnode status --cluster``)."""
        self._exporting = False

    def handles(self, path: str) -> bool:
        return path == PREFIX or path.startswith(PREFIX + "/")

    async def handle(self, request: Request) -> Response:
        """Raises ``ApiError``; the client API renders it."""
        deadline = time.monotonic() + self.request_timeout
        route = request.path[len(PREFIX) :].rstrip("/")
        parts = [p for p in route.split("/") if p]
        method = request.method
        if parts == ["status"]:
            _require(method, "GET", request.path)
            return _json(200, self.node.status())  # this node's own view: never forwarded
        if parts == ["snapshot"]:
            _require(method, "GET", request.path)
            return await self._snapshot()  # this node's own applied state: never forwarded
        if parts == ["members"] and method == "GET":
            run: Callable[[], Awaitable[Response | None]] = self._list
        elif parts == ["members"] and method == "POST":
            prev = _prev_index(request)
            run = lambda: self._add(request, deadline, prev)  # noqa: E731
        elif parts == ["members"]:
            raise method_not_allowed(method, request.path, "GET, POST")
        elif len(parts) == 3 and parts[0] == "members" and parts[2] == "promote":
            _require(method, "POST", request.path)
            member = _member_id(parts[1])
            prev = _prev_index(request)
            run = lambda: self._change(  # noqa: E731
                ConfChangeOp.ADD_VOTER, member, {}, deadline, prev
            )
        elif len(parts) == 2 and parts[0] == "members":
            _require(method, "DELETE", request.path)
            member = _member_id(parts[1])
            prev = _prev_index(request)
            run = lambda: self._remove(member, deadline, prev)  # noqa: E731
        elif parts == ["compact"]:
            _require(method, "POST", request.path)
            rev = requested_revision(request)
            run = lambda: compact(self.service, rev, deadline)  # noqa: E731
        elif parts == ["leader", "transfer"]:
            _require(method, "POST", request.path)
            run = lambda: self._transfer(request, deadline)  # noqa: E731
        else:
            raise ApiError(404, ErrorCode.NO_ROUTE, f"no admin endpoint {request.path}")
        while True:
            if self.node.is_leader:
                answer = await run()
                if answer is not None:
                    return answer
                continue  # leadership moved on purpose (removing the leader): forward now
            leader = self.node.leader_id
            if leader == 0:
                leader = await self.node.wait_for_leader(max(0.0, deadline - time.monotonic()))
                if leader == 0:
                    raise unavailable("no leader is known; retry shortly")
                continue
            forwarded = await self.forward(request, leader, deadline)
            if forwarded is not None:
                return forwarded

    async def _snapshot(self) -> Response:
        """Stream a snapshot of this node's applied state: one export at a time (each holds a
        copy of the store), sent within ``_send_seconds`` of its size."""
        if self._exporting:
            raise unavailable(
                "a snapshot export is already running on this node; retry when it is done",
                retry_after=5,
            )
        self._exporting = True
        try:
            data, meta, sha256 = await self.node.export_snapshot()
        except BaseException as e:
            self._exporting = False
            if isinstance(e, Unavailable):
                raise unavailable(str(e)) from e
            raise
        headers = {
            "Content-Disposition": f'attachment; filename="raftnode-{meta.index}.snapshot"',
            "X-Raftnode-Snapshot-Index": str(meta.index),
            "X-Raftnode-Snapshot-Term": str(meta.term),
            "X-Raftnode-Snapshot-Sha256": sha256,
        }
        return Response(
            200,
            headers=headers,
            content_type="application/octet-stream",
            stream=StreamedBody(
                data, len(data), send_seconds=_send_seconds(len(data)), on_done=self._exported
            ),
        )

    def _exported(self) -> None:
        self._exporting = False

    async def _list(self) -> Response | None:
        node = self.node
        members = node.members()
        for member in members:
            client = self.member_clients.get(member["id"])
            member["client"] = str(client) if client is not None else None
        return _json(
            200,
            {
                "leader": node.leader_id,
                "term": node.term,
                "config_index": node.config_index,
                "members": members,
            },
        )

    async def _add(self, request: Request, deadline: float, prev: int | None) -> Response:
        body = _body(request)
        unknown = sorted(set(body) - {"id", "peer", "client"})
        if unknown:
            raise bad_request(f"unknown field(s) {', '.join(unknown)}; allowed: id, peer, client")
        member = body.get("id")
        if (
            not isinstance(member, int)
            or isinstance(member, bool)
            or not 0 < member <= MAX_MEMBER_ID
        ):
            raise bad_request(
                f"id must be an integer from 1 to {MAX_MEMBER_ID} (the new node's node_id)"
            )
        context: dict[str, str] = {}
        for field in ("peer", "client"):
            value = body.get(field)
            if field == "peer" or value is not None:
                if not isinstance(value, str):
                    raise bad_request(f"{field} must be host:port")
                try:
                    Address.parse(value)
                except ValueError as e:
                    raise bad_request(f"{field}: {e}") from e
                context[field] = str(Address.parse(value))
        conf = self.node.conf
        if member in conf.members():
            raise ApiError(409, ErrorCode.CONFLICT, f"node {member} is already a member")
        clients = {
            m: {"client": str(a)} for m, a in self.member_clients.items() if m in conf.members()
        }
        _conflict_unless(lambda: check_addresses_unused(member, context, clients))
        return await self._change(ConfChangeOp.ADD_LEARNER, member, context, deadline, prev)

    async def _remove(self, member: int, deadline: float, prev: int | None) -> Response | None:
        if member not in self.node.conf.members():
            raise ApiError(404, ErrorCode.NOT_FOUND, f"node {member} is not a member")
        _conflict_unless(lambda: check_prev_index(prev, self.node.config_index))
        if member == self.node.node_id:
            # The leader hands leadership to a caught-up voter first; the new leader removes it.
            if not await self.node.transfer_leadership(_remaining(deadline)):
                raise unavailable("could not hand leadership over before removing this node")
            return None
        return await self._change(ConfChangeOp.REMOVE, member, {}, deadline, prev)

    async def _change(
        self,
        op: ConfChangeOp,
        member: int,
        context: dict[str, str],
        deadline: float,
        prev: int | None = None,
    ) -> Response:
        while True:
            try:
                conf = await self.node.change_membership(
                    op, member, context, _remaining(deadline), prev
                )
                break
            except LeaderNotReady:
                if not await self.node.changed(deadline):
                    raise unavailable("the new leader is not ready yet; retry") from None
                continue
            except ConfChangeError as e:
                raise ApiError(409, ErrorCode.CONFLICT, str(e)) from e
            except NotLeader as e:
                raise _retry_at_new_leader() from e
            except Unavailable as e:
                raise unavailable(f"{e}; retry shortly") from e
            except OutcomeUnknown as e:
                raise ApiError(
                    504,
                    ErrorCode.OUTCOME_UNKNOWN,
                    f"{e}; list the members to learn whether the change applied",
                ) from e
        return _json(
            200,
            {
                "ok": True,
                "op": op.name.lower(),
                "id": member,
                "voters": sorted(conf.voters),
                "learners": sorted(conf.learners),
                "config_index": self.node.config_index,
                "members": self.node.members(),
            },
        )

    async def _transfer(self, request: Request, deadline: float) -> Response:
        body = _body(request) if request.body else {}  # whitespace is not JSON: 400
        target = body.get("to")
        if target is not None and (not isinstance(target, int) or isinstance(target, bool)):
            raise bad_request("to must be a member id (or absent: the most caught-up voter)")
        if target is not None and target not in self.node.conf.voters:
            # A well-formed request the configuration refuses: a conflict, like a promotion
            # of a non-learner, not a malformed request.
            raise ApiError(409, ErrorCode.CONFLICT, f"node {target} is not a voter")
        if target == self.node.node_id:
            return _json(200, {"ok": True, "leader": self.node.node_id, "term": self.node.term})
        if not await self.node.transfer_leadership(_remaining(deadline), target):
            raise unavailable("leadership did not move within the deadline; retry")
        return _json(200, {"ok": True, "leader": self.node.leader_id, "term": self.node.term})


EXPORT_MIN_SECONDS = 60.0
EXPORT_MIN_BYTES_PER_SECOND = 1 << 20


def _send_seconds(size: int) -> float:
    """How long a snapshot download may take: a minute, plus a second per MiB (a reader slower
    than 1 MiB/s is cut off, so it cannot pin the snapshot's copy for ever)."""
    return EXPORT_MIN_SECONDS + size / EXPORT_MIN_BYTES_PER_SECOND


def _require(method: str, allowed: str, path: str) -> None:
    if method not in allowed.split(", "):
        raise method_not_allowed(method, path, allowed)


MAX_MEMBER_ID = 10**18 - 1
"""Member ids have at most 18 digits (docs/openapi.yaml, MemberId)."""


def _member_id(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 18 or int(text) <= 0:
        raise bad_request(f"member id must be a positive integer, got {text!r}")
    return int(text)


def _prev_index(request: Request) -> int | None:
    """The optional ``?prev_index=N``: the ``config_index`` the caller decided on."""
    text = request.param("prev_index")
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise bad_request(
            f"prev_index must be a non-negative integer (config_index from GET "
            f"{PREFIX}/members), got {text!r}",
            ErrorCode.BAD_PARAM,
        )
    return int(text)


def _conflict_unless(check: Callable[[], None]) -> None:
    try:
        check()
    except ConfChangeError as e:
        raise ApiError(409, ErrorCode.CONFLICT, str(e)) from e


def _body(request: Request) -> dict[str, Any]:
    return decode_json_object(request.body or b"{}")


def _remaining(deadline: float) -> float:
    return max(CHANGE_TIMEOUT_FLOOR, deadline - time.monotonic())


def _retry_at_new_leader() -> ApiError:
    return unavailable("leadership moved while handling the request; retry it")
