"""Prometheus metrics of one node, in its own ``CollectorRegistry``.

A per-node registry (rather than the process-global default) lets several nodes run in one
process (tests, embedding) without their series colliding. ``/metrics`` renders it.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
ROLES = ("follower", "pre_candidate", "candidate", "leader")


class NodeMetrics:
    """Every series the node exports; names are prefixed ``raftnode_``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
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
        self.peer_refused = Counter(
            "raftnode_peer_connections_refused",
            "Inbound peer connections that failed authentication.",
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

    def quota_refused(self) -> None:
        self.quota_refusals.inc()
        self._quota_alarm = True

    def set_role(self, role: str) -> None:
        for name in ROLES:
            self.role.labels(role=name).set(1 if name == role else 0)
        self.is_leader.set(1 if role == "leader" else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
