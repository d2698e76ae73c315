"""The HTTP layer on its own (stand-in node and service): every error is one JSON shape with the
right status, request metrics are recorded once per request, and the health endpoints answer
HEAD and OPTIONS with GET's status code."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from types import SimpleNamespace
from typing import Any

import tornado.testing
import tornado.web

from raftnode.config import Limits
from raftnode.http.client_api import ClientApi, ClientApiSettings
from raftnode.http.connection import Request, Response
from raftnode.http.health import make_health_app
from raftnode.metrics import NodeMetrics
from raftnode.node import Unavailable


class NoLeaderService:
    """A service whose reads find no leader; writes must not reach it in these tests."""

    def __init__(self) -> None:
        self.node = SimpleNamespace(
            is_leader=False, leader_id=0, membership="voter", stopping=False
        )
        self.store = SimpleNamespace()

    async def read_barrier(self, consistency: str, deadline: float) -> None:
        raise Unavailable("no leader is known")

    async def write(self, cmd: Any, deadline: float) -> Any:
        raise AssertionError("a bad request reached the service")


def sample_count(metrics: NodeMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(f"{name}_count", labels)
    return value or 0.0


def answer(
    method: str, target: str, body: bytes = b"", membership: str = "voter"
) -> tuple[Response, NodeMetrics]:
    """What ``ClientApi.handle`` answers to one request (no socket involved)."""
    metrics = NodeMetrics()
    settings = ClientApiSettings(node_id=1, limits=Limits(), request_timeout=1.0, member_clients={})
    service = NoLeaderService()
    service.node.membership = membership
    api = ClientApi(service, settings, metrics)  # type: ignore[arg-type]
    path, _, query = target.partition("?")
    request = Request(
        method=method,
        path=urllib.parse.unquote(path),
        raw_path=target,
        query=urllib.parse.parse_qs(query, keep_blank_values=True),
        headers={},
        body=body,
        remote="127.0.0.1",
        started=0.0,
    )
    return asyncio.run(api.handle(request)), metrics


def error_of(response: Response) -> dict[str, Any]:
    assert response.content_type == "application/json"
    body = json.loads(response.body)
    assert set(body) >= {"error", "message"} and body["message"]
    return body


def test_bad_body_is_400_and_recorded_once_as_a_write() -> None:
    r, metrics = answer("POST", "/kv", b"{not json")
    assert r.status == 400
    assert error_of(r)["error"] == "bad_json"
    assert sample_count(metrics, "raftnode_write_seconds", op="put", outcome="bad_json") == 1
    assert sample_count(metrics, "raftnode_write_seconds", op="put", outcome="ok") == 0


def test_unknown_parameter_and_bad_consistency_are_400() -> None:
    r, _ = answer("GET", "/kv/k?color=red")
    assert (r.status, error_of(r)["error"]) == (400, "bad_param")
    r, _ = answer("GET", "/kv/k?consistency=eventual")
    body = error_of(r)
    assert (r.status, body["error"]) == (400, "bad_param")
    assert "linearizable, lease, stale" in body["message"]


def test_oversized_key_is_413() -> None:
    r, _ = answer("GET", "/kv/" + "k" * 2000)
    assert (r.status, error_of(r)["error"]) == (413, "too_large")


def test_no_leader_is_503_with_retry_after() -> None:
    r, metrics = answer("GET", "/kv/k")
    assert r.status == 503 and r.headers["Retry-After"] == "1"
    assert error_of(r)["error"] == "unavailable"
    labels = {"consistency": "linearizable", "outcome": "unavailable"}
    assert sample_count(metrics, "raftnode_read_seconds", **labels) == 1


def test_a_removed_or_unjoined_node_refuses_requests_as_not_a_member() -> None:
    for membership in ("removed", "not_joined"):
        r, _ = answer("GET", "/kv/k?consistency=stale", membership=membership)
        body = error_of(r)
        assert (r.status, body["error"]) == (503, "unavailable")
        assert "not a member" in body["message"]


def test_unknown_route_and_method_use_the_same_shape() -> None:
    r, _ = answer("GET", "/nope")
    assert (r.status, error_of(r)["error"]) == (404, "no_route")
    r, _ = answer("PATCH", "/kv/k", b"{}")
    assert (r.status, error_of(r)["error"]) == (405, "method_not_allowed")


def test_every_405_lists_the_allowed_methods() -> None:
    """Regression (schemathesis, unsupported_method): 405s came without the ``Allow`` header
    RFC 9110 requires, and TRACE on /admin/v1/members was a 404."""
    for method, path, allowed in [
        ("TRACE", "/kv", "GET, POST"),
        ("PATCH", "/kv/k", "GET, PUT, DELETE"),
        ("TRACE", "/admin/v1/members", "GET, POST"),
        ("PUT", "/admin/v1/members/4", "DELETE"),
        ("GET", "/admin/v1/members/4/promote", "POST"),
        ("GET", "/admin/v1/leader/transfer", "POST"),
        ("POST", "/admin/v1/status", "GET"),
        ("DELETE", "/admin/v1/snapshot", "GET"),
        ("GET", "/admin/v1/compact", "POST"),
    ]:
        r, _ = answer(method, path)
        assert (r.status, error_of(r)["error"]) == (405, "method_not_allowed"), (method, path)
        assert r.headers["Allow"] == allowed, (method, path)


def test_a_compaction_with_a_bad_revision_is_refused_before_anything_is_proposed() -> None:
    for body in (
        b"{}",
        b'{"revision": 0}',
        b'{"revision": -3}',
        b'{"revision": "5"}',
        b'{"revision": true}',
        b'{"revision": 5.0}',
        b'{"revision": 9223372036854775808}',
    ):
        r, _ = answer("POST", "/admin/v1/compact", body)
        err = error_of(r)
        assert (r.status, err["error"]) == (400, "bad_field"), body
        assert "from 1 to 9223372036854775807" in err["message"], body
    r, _ = answer("POST", "/admin/v1/compact", b'{"revision": 5, "physical": true}')
    assert r.status == 400 and "unknown field(s) physical" in error_of(r)["message"]


class FollowerNode:
    """Enough of a RaftNode for the health endpoints: a follower that knows no leader."""

    membership = "voter"
    is_leader = False
    leader_id = 0
    term = 3
    stopping = False
    healthy = True
    failure = None
    role = SimpleNamespace(value="follower")

    def has_quorum(self) -> bool:
        return False

    def is_caught_up_replica(self, max_lag: int) -> bool:
        return False

    def replica_lag(self) -> int:
        return 0

    def status(self) -> dict[str, Any]:
        return {"id": 1, "role": "follower"}

    def refresh_metrics(self) -> None:
        pass


class HealthMethodsTest(tornado.testing.AsyncHTTPTestCase):
    def get_app(self) -> tornado.web.Application:
        return make_health_app(FollowerNode(), NodeMetrics())  # type: ignore[arg-type]

    def test_head_and_options_answer_with_gets_status(self) -> None:
        for path, status in (("/primary", 503), ("/health", 200), ("/status", 200)):
            got = self.fetch(path)
            assert got.code == status, path
            head = self.fetch(path, method="HEAD")
            assert head.code == status and head.body == b"", path
            assert head.headers["Content-Length"] == str(len(got.body)), path
            options = self.fetch(path, method="OPTIONS")
            assert options.code == status, path
            assert options.headers["Allow"] == "GET, HEAD, OPTIONS", path

    def test_bad_lag_is_400(self) -> None:
        assert self.fetch("/replica?lag=x").code == 400


def test_bad_watch_requests_are_refused_before_anything_is_opened() -> None:
    for target, code in [
        ("/watch?key=a&prefix=a", "bad_param"),
        ("/watch?start_revision=x", "bad_param"),
        ("/watch?start_revision=0", "bad_param"),
        ("/watch?since=3", "bad_param"),
        ("/watch?prefix=" + "p" * 2000, "too_large"),
    ]:
        r, _ = answer("GET", target)
        assert error_of(r)["error"] == code, target
    r, _ = answer("POST", "/watch")
    assert r.status == 405 and r.headers["Allow"] == "GET"
