"""The health listener: role and readiness as status codes, ``/status`` JSON, ``/metrics``.

Answers come from in-memory state only (no Raft round trips, no disk), so a load balancer can
poll every few hundred milliseconds. Each endpoint implements GET only; HEAD and OPTIONS answer
the same status code through it (HAProxy's bare ``option httpchk`` sends OPTIONS).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import tornado.web
from prometheus_client import CONTENT_TYPE_LATEST

from raftnode.defaults import REPLICA_MAX_LAG
from raftnode.http.errors import ApiError
from raftnode.logs import log_health_request
from raftnode.metrics import NodeMetrics
from raftnode.node import RaftNode
from raftnode.tls import certificate_names

Guard = Callable[[str | None, tuple[str, ...]], ApiError | None]
"""Decides whether a request (its Authorization header, its client certificate's names) may
read ``/status`` and ``/metrics``; None: it may."""


class _HealthHandler(tornado.web.RequestHandler):
    endpoint = "unknown"

    def initialize(
        self,
        node: RaftNode,
        metrics: NodeMetrics,
        extra_status: Callable[[], dict[str, Any]] | None = None,
        guard: Guard | None = None,
    ) -> None:
        self.node = node
        self.guard = guard
        self.metrics = metrics
        self.extra_status = extra_status
        self.started = time.monotonic()

    def on_finish(self) -> None:
        self.metrics.health_seconds.labels(
            endpoint=self.endpoint, code=str(self.get_status())
        ).observe(time.monotonic() - self.started)

    def head(self) -> None:
        # Tornado sends HEAD the headers GET would (Content-Length included) and drops the body.
        self.get()

    def options(self) -> None:
        self.set_header("Allow", "GET, HEAD, OPTIONS")
        self.get()


class _VerdictHandler(_HealthHandler):
    """The answer is the status code: 200 when ``verdict`` holds, 503 when not."""

    def verdict(self) -> tuple[bool, str]:
        raise NotImplementedError

    def get(self) -> None:
        ok, reason = self.verdict()
        self.set_status(200 if ok else 503)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(f"{reason}\n")


class PrimaryHandler(_VerdictHandler):
    """200 only on a leader that heard from a quorum within the last election timeout."""

    endpoint = "primary"

    def verdict(self) -> tuple[bool, str]:
        n = self.node
        if not n.is_leader:
            return False, f"not leader (role={n.role.value} leader={n.leader_id})"
        if not n.has_quorum():
            return False, "leader without quorum contact"
        if n.stopping:
            return False, "leader shutting down"
        return True, f"leader term={n.term}"


class ReplicaHandler(_VerdictHandler):
    """200 only on a follower that knows a live leader and lags at most ``?lag=N`` entries."""

    endpoint = "replica"

    def verdict(self) -> tuple[bool, str]:
        arg = self.get_query_argument("lag", str(REPLICA_MAX_LAG))
        if not arg.isdigit():
            raise tornado.web.HTTPError(400, "lag must be a non-negative integer")
        n = self.node
        if n.is_caught_up_replica(int(arg)):
            return True, f"replica leader={n.leader_id} lag={n.replica_lag()}"
        return (
            False,
            f"not a caught-up replica (role={n.role.value} leader={n.leader_id} "
            f"lag={n.replica_lag()})",
        )


class HealthHandler(_VerdictHandler):
    """200 while the process runs and its storage accepts writes."""

    endpoint = "health"

    def verdict(self) -> tuple[bool, str]:
        n = self.node
        if n.healthy:
            return True, "ok"
        return False, f"unhealthy: {n.failure!r}" if n.failure else "unhealthy: storage not usable"


class ReadinessHandler(_VerdictHandler):
    """200 once the node serves: healthy, a leader is known (or it leads with quorum), caught up."""

    endpoint = "readiness"

    def verdict(self) -> tuple[bool, str]:
        n = self.node
        if not n.healthy or n.stopping:
            return False, "not healthy"
        if n.membership != "voter":
            return False, f"not serving: {n.membership}"
        if n.is_leader:
            return (True, "ready (leader)") if n.has_quorum() else (False, "leader without quorum")
        if n.is_caught_up_replica(REPLICA_MAX_LAG):
            return True, "ready (follower)"
        return False, f"not ready (leader={n.leader_id} lag={n.replica_lag()})"


class _GuardedHandler(_HealthHandler):
    """``/status`` and ``/metrics``: restricted to ``auth.status_role`` when it is set (the
    checks HAProxy polls stay open and cheap)."""

    def prepare(self) -> None:
        if self.guard is None:
            return
        https = self.request.protocol == "https"
        names = certificate_names(self.request.get_ssl_certificate()) if https else ()
        refused = self.guard(self.request.headers.get("Authorization"), names)
        if refused is None:
            return
        self.set_status(refused.status)
        for name, value in refused.headers.items():
            self.set_header(name, value)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(refused.body(), separators=(",", ":")))


class StatusHandler(_GuardedHandler):
    endpoint = "status"

    def _status(self) -> dict[str, Any]:
        status = self.node.status()
        if self.extra_status is not None:
            status.update(self.extra_status())
        return status

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self._status(), indent=None, separators=(",", ":")))


class MetricsHandler(_GuardedHandler):
    endpoint = "metrics"

    def get(self) -> None:
        self.node.refresh_metrics()
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(self.metrics.render())


def make_health_app(
    node: RaftNode,
    metrics: NodeMetrics,
    extra_status: Callable[[], dict[str, Any]] | None = None,
    guard: Guard | None = None,
) -> tornado.web.Application:
    args = {"node": node, "metrics": metrics, "extra_status": extra_status, "guard": guard}
    return tornado.web.Application(
        [
            (r"/primary", PrimaryHandler, args),
            (r"/replica", ReplicaHandler, args),
            (r"/health", HealthHandler, args),
            (r"/readiness", ReadinessHandler, args),
            (r"/status", StatusHandler, args),
            (r"/metrics", MetricsHandler, args),
        ],
        log_function=log_health_request,
    )
