"""Prometheus metrics of one node, in its own ``CollectorRegistry``.

A per-node registry (rather than the process-global default) lets several nodes run in one
process (tests, embedding) without their series colliding. ``/metrics`` renders it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)

from raftnode import __version__
from raftnode.raft.types import Message, MessageType

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
ROLES = ("follower", "pre_candidate", "candidate", "leader")


class NodeMetrics:
    """Every series the node exports; names are prefixed ``raftnode_``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        # process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ... of
        # this process (Linux /proc; nothing elsewhere). Several nodes in one process share them.
        ProcessCollector(registry=r)
        Info("raftnode_build", "The running raftnode's version.", registry=r).info(
            {"version": __version__}
        )
        self.has_leader = Gauge(
            "raftnode_has_leader", "1 when this node knows a leader (itself or a peer).", registry=r
        )
        self.term = Gauge("raftnode_term", "Current Raft term.", registry=r)
        self.role = Gauge("raftnode_role", "1 for the node's current role.", ["role"], registry=r)
        self.is_leader = Gauge("raftnode_is_leader", "1 when this node is the leader.", registry=r)
        self.leader_id = Gauge(
            "raftnode_leader_id", "The known leader's id (0 = unknown).", registry=r
        )
        self.commit_index = Gauge(
            "raftnode_commit_index", "Highest committed log index.", registry=r
        )
        self.applied_index = Gauge(
            "raftnode_applied_index", "Highest applied log index.", registry=r
        )
        self.last_index = Gauge("raftnode_last_index", "Last log index.", registry=r)
        self.elections = Counter(
            "raftnode_elections", "Elections this node started (became candidate).", registry=r
        )
        self.http_refusals = Counter(
            "raftnode_http_refusals",
            "Connections and requests refused by a listener's HTTP layer before any handler "
            "ran: connection caps (503), oversized or slow headers (431, 408), slow or "
            "oversized bodies (408, 413), malformed requests (400, 501).",
            ["listener", "reason"],
            registry=r,
        )
        self.leader_changes = Counter(
            "raftnode_leader_changes", "Times the known leader changed.", registry=r
        )
        self.leadership_transfers = Counter(
            "raftnode_leadership_transfers",
            "Leadership transfers this node started.",
            registry=r,
        )
        self.replication_lag = Gauge(
            "raftnode_replication_lag_entries",
            "Leader only: entries a peer is behind the leader's last index.",
            ["peer"],
            registry=r,
        )
        self.peer_connected = Gauge(
            "raftnode_peer_connected",
            "1 when the outbound stream to a peer is up.",
            ["peer"],
            registry=r,
        )
        self.peer_round_trip = Histogram(
            "raftnode_peer_round_trip_seconds",
            "Leader only: heartbeat sent to heartbeat response received, per peer.",
            ["peer"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # peer -> (heartbeat context, monotonic send time) of the oldest unanswered heartbeat.
        self._heartbeats: dict[int, tuple[int, float]] = {}
        self.peer_refused = Counter(
            "raftnode_peer_connections_refused",
            "Inbound peer connections that failed authentication.",
            registry=r,
        )
        self.peer_auth_failures = Counter(
            "raftnode_peer_auth_failures",
            "Peer streams closed for failed authentication, by reason: bad_proof (a dialer's "
            "handshake MAC), bad_frame_mac (a frame after the handshake), old_protocol (an "
            "offer older than peer_min_protocol).",
            ["reason"],
            registry=r,
        )
        self.fsync_seconds = Histogram(
            "raftnode_fsync_seconds",
            "Time spent in fsync per persist.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.persist_entries = Histogram(
            "raftnode_persist_batch_entries",
            "Entries written per persist (group commit batch size).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=r,
        )
        self.snapshot_bytes = Histogram(
            "raftnode_snapshot_bytes",
            "Size of snapshots taken or received.",
            buckets=(1 << 10, 1 << 14, 1 << 17, 1 << 20, 1 << 23, 1 << 26, 1 << 29),
            registry=r,
        )
        self.snapshots = Counter("raftnode_snapshots", "Snapshots taken.", ["kind"], registry=r)
        self.proposals_pending = Gauge(
            "raftnode_proposals_pending", "Proposals waiting to be applied.", registry=r
        )
        self.write_seconds = Histogram(
            "raftnode_write_seconds",
            "Client write latency by operation and outcome.",
            ["op", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.read_seconds = Histogram(
            "raftnode_read_seconds",
            "Client read latency by consistency and outcome.",
            ["consistency", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.forwarded = Counter(
            "raftnode_forwarded_requests",
            "Writes forwarded to the leader.",
            ["outcome"],
            registry=r,
        )
        self.quota_refusals = Counter(
            "raftnode_quota_refusals",
            "Writes refused because the store reached its quota (limits.max_store_bytes).",
            registry=r,
        )
        self.leases_expired = Counter(
            "raftnode_leases_expired",
            "Leases this node revoked as their leader because keep-alives stopped.",
            registry=r,
        )
        self.watch_events_sent = Counter(
            "raftnode_watch_events_sent",
            "Changes this node handed to watch streams.",
            registry=r,
        )
        self.watchers_cancelled = Counter(
            "raftnode_watchers_cancelled",
            "Watch streams this node ended (compacted, slow_client, history_replaced, "
            "shutdown, internal_error); a client closing its stream is not counted.",
            ["reason"],
            registry=r,
        )
        self._quota_alarm = False
        self.health_seconds = Histogram(
            "raftnode_health_request_seconds",
            "Health endpoint response time.",
            ["endpoint", "code"],
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
            registry=r,
        )

    def watch_store(self, used_bytes: Callable[[], int], quota_bytes: int | None) -> None:
        """Export the store's size against its quota, read at each scrape; the alarm is 1 from
        a write refused for the quota until the store is below 90% of it again."""
        r = self.registry
        Gauge(
            "raftnode_store_bytes", "Logical size of the store: keys plus values.", registry=r
        ).set_function(used_bytes)
        Gauge(
            "raftnode_store_quota_bytes", "The store's quota (0 = none).", registry=r
        ).set_function(lambda: quota_bytes or 0)

        def alarm() -> float:
            if self._quota_alarm and quota_bytes and used_bytes() < 0.9 * quota_bytes:
                self._quota_alarm = False
            return 1.0 if self._quota_alarm else 0.0

        Gauge(
            "raftnode_quota_alarm",
            "1 after a write was refused for the quota, until the store is below 90% of it.",
            registry=r,
        ).set_function(alarm)

    def watch_leases(self, count: Callable[[], int]) -> None:
        """Export how many leases the store holds, read at each scrape."""
        Gauge(
            "raftnode_leases",
            "Leases the store holds (granted, not yet revoked or expired).",
            registry=self.registry,
        ).set_function(count)

    def watch_history(
        self, watchers: Callable[[], int], compact_revision: Callable[[], int]
    ) -> None:
        """Export the open watch streams and the history window's compact revision, read at
        each scrape."""
        r = self.registry
        Gauge("raftnode_watchers", "Watch streams open on this node.", registry=r).set_function(
            watchers
        )
        Gauge(
            "raftnode_history_compact_revision",
            "The highest revision no longer in the history window (watches start after it).",
            registry=r,
        ).set_function(compact_revision)

    def watch_cancelled(self, reason: str) -> None:
        self.watchers_cancelled.labels(reason=reason).inc()

    def quota_refused(self) -> None:
        self.quota_refusals.inc()
        self._quota_alarm = True

    def set_role(self, role: str) -> None:
        for name in ROLES:
            self.role.labels(role=name).set(1 if name == role else 0)
        self.is_leader.set(1 if role == "leader" else 0)
        if role != "leader":
            # Lag and round trip are the leader's view: a former leader's series would stay
            # frozen at their last values (and keep lag alerts firing) until it leads again.
            self.replication_lag.clear()
            self._heartbeats.clear()

    def set_leader(self, leader_id: int) -> None:
        self.leader_id.set(leader_id)
        self.has_leader.set(1 if leader_id else 0)

    def heartbeats_sent(self, messages: Iterable[Message]) -> None:
        """Note the send time of each heartbeat: one outstanding per peer, the oldest kept
        (newer ones would never be answered first on a slow link) until it is answered or
        10 s old (lost: the peer was down)."""
        now = time.monotonic()
        for m in messages:
            if m.type is MessageType.HEARTBEAT:
                pending = self._heartbeats.get(m.to)
                if pending is None or now - pending[1] > 10.0:
                    self._heartbeats[m.to] = (m.context, now)

    def heartbeat_answered(self, m: Message) -> None:
        """Observe the round trip when a peer echoes the noted heartbeat's context."""
        sent = self._heartbeats.get(m.frm)
        if sent is not None and m.type is MessageType.HEARTBEAT_RESP and m.context == sent[0]:
            del self._heartbeats[m.frm]
            self.peer_round_trip.labels(peer=str(m.frm)).observe(time.monotonic() - sent[1])

    def forget_peer(self, peer: int) -> None:
        """Drop a removed member's leader-side series."""
        for metric in (self.replication_lag, self.peer_round_trip, self.peer_connected):
            with contextlib.suppress(KeyError):
                metric.remove(str(peer))
        self._heartbeats.pop(peer, None)

    def render(self) -> bytes:
        return generate_latest(self.registry)
