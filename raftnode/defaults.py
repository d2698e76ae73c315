"""Every runtime default, defined once: the YAML parser, the runtime, the dev cluster and the
documentation (``docs/configuration.md``, checked by a test) all read them from here.

As in hashicorp/raft's ``DefaultConfig()`` and ``ValidateConfig()``: each configuration section
is a frozen dataclass whose field defaults *are* the defaults (``Timing()`` is the default
timing), each integer field carries the smallest value it accepts, and ``problems()`` checks what
relates one field to another. This module imports nothing from raftnode, so the consensus core
and the runtime can read it without pulling in the YAML configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

REPLICA_MAX_LAG = 100
"""Entries a follower may trail the leader and still count as a caught-up replica
(``/replica`` without ``?lag=``, ``/readiness``)."""


def at_least(minimum: int, *, default: int) -> Any:
    """A dataclass field holding an integer ``>= minimum`` that defaults to ``default``."""
    return field(default=default, metadata={"minimum": minimum})


@dataclass(frozen=True, slots=True)
class Timing:
    """``timing:`` in the YAML. Raft timing is in ticks; everything else in milliseconds."""

    tick_ms: int = at_least(1, default=50)
    election_ticks: int = at_least(2, default=10)
    heartbeat_ticks: int = at_least(1, default=1)
    request_timeout_ms: int = at_least(1, default=5000)
    shutdown_transfer_ms: int = at_least(0, default=3000)

    @property
    def tick_seconds(self) -> float:
        return self.tick_ms / 1000

    @property
    def election_seconds(self) -> float:
        return self.election_ticks * self.tick_seconds

    @property
    def request_timeout_seconds(self) -> float:
        return self.request_timeout_ms / 1000

    @property
    def shutdown_transfer_seconds(self) -> float:
        return self.shutdown_transfer_ms / 1000

    def problems(self) -> list[str]:
        if self.heartbeat_ticks >= self.election_ticks:
            return [
                "timing.heartbeat_ticks: must be smaller than timing.election_ticks "
                f"({self.election_ticks}), got {self.heartbeat_ticks}"
            ]
        return []


@dataclass(frozen=True, slots=True)
class Limits:
    """``limits:`` in the YAML: the largest key, value and request body a client may send, and
    how large the store may grow."""

    max_key_bytes: int = at_least(1, default=1024)
    max_value_bytes: int = at_least(1, default=1 << 20)
    max_request_bytes: int = at_least(64, default=2 << 20)
    max_store_bytes: int = at_least(0, default=2 << 30)
    """The store's quota (etcd's ``--quota-backend-bytes``): keys plus values, in bytes; past
    it, writes that add data are refused with 507. 0 turns the quota off."""
    min_free_disk_bytes: int = at_least(0, default=256 << 20)
    """Writes that add data are refused with 507 while the data directory's filesystem has less
    than this free (deletes still work); the Raft log needs room to record even a delete.
    0 turns the guard off."""
    max_list_bytes: int = at_least(1024, default=4 << 20)
    """A ``GET /kv?prefix=`` page stops before its keys and values pass this many bytes
    (``more`` is then true), so one request never builds an answer of gigabytes."""
    max_txn_ops: int = at_least(1, default=128)
    """Compares and operations in one ``POST /txn``, together (etcd's ``--max-txn-ops``);
    more -> 413 naming this limit."""
    max_txn_bytes: int = at_least(1024, default=3 << 19)
    """The keys and values of one transaction's compares and operations, in bytes (1.5 MiB,
    etcd's request size); more -> 413 naming this limit."""
    max_snapshot_bytes: int = at_least(1 << 20, default=16 << 30)
    """The largest snapshot file a node accepts to restore or install, in bytes."""
    # HTTP limits of the client listener (and, where they apply, the health listener). Sized
    # like Apache's LimitRequestLine/LimitRequestFields (8190 bytes, 100 fields), nginx's
    # large_client_header_buffers (4 x 8k) and HAProxy's `timeout http-request 10s`.
    max_request_line_bytes: int = at_least(256, default=8192)
    """The request target (path and query) may be this long; longer -> 431."""
    max_header_bytes: int = at_least(1024, default=32768)
    """The request line and every header line together; larger -> 431."""
    max_header_count: int = at_least(1, default=100)
    """Header fields in one request; more -> 431."""
    header_timeout_ms: int = at_least(100, default=10000)
    """From a request's first byte to the end of its headers, however the bytes trickle in;
    later -> 408 and the connection closes (the slowloris bound)."""
    body_timeout_ms: int = at_least(100, default=30000)
    """From the end of the headers to the end of the body (at the default, a 4 MiB body
    needs ~140 KB/s); later -> 408 and the connection closes."""
    idle_timeout_ms: int = at_least(100, default=60000)
    """A keep-alive connection with no request in progress closes after this long. Bytes that
    do not complete a request do not extend it."""
    max_connections: int = at_least(1, default=10000)
    """Open client-API connections; one more is answered 503 with Retry-After and closed.
    An idle one costs the node about 7 KB of RSS and a descriptor (``make bench-connections``); the
    process raises its descriptor limit to fit when the hard limit allows."""
    max_connections_per_address: int = at_least(1, default=1024)
    """Open connections from one source address (on the client and the health listener);
    above it, 503. A tenth of ``max_connections``: one client cannot take them all, while a
    load balancer, which speaks for every client from one address, keeps room for its pool
    (give its servers a ``maxconn`` at or under this, so it queues instead)."""
    max_pipelined_requests: int = at_least(1, default=32)
    """Requests read but not yet answered on one connection before reading pauses."""
    max_pipelined_bytes: int = at_least(65536, default=4 << 20)
    """Bytes of requests read but not yet answered on one connection before reading pauses."""
    write_buffer_high_bytes: int = at_least(4096, default=256 << 10)
    """Unsent answer bytes on one connection above which reading pauses (resumes at a
    quarter); a client that reads nothing for ``idle_timeout_ms`` is disconnected."""
    max_health_connections: int = at_least(1, default=256)
    """Open connections to the health listener (load balancer checks, Prometheus)."""

    @property
    def header_timeout_seconds(self) -> float:
        return self.header_timeout_ms / 1000

    @property
    def body_timeout_seconds(self) -> float:
        return self.body_timeout_ms / 1000

    @property
    def idle_timeout_seconds(self) -> float:
        return self.idle_timeout_ms / 1000

    def problems(self) -> list[str]:
        found = []
        if self.max_request_line_bytes > self.max_header_bytes:
            found.append(
                "limits.max_request_line_bytes: must not exceed limits.max_header_bytes "
                f"({self.max_header_bytes}), got {self.max_request_line_bytes}"
            )
        if self.max_connections_per_address > self.max_connections:
            found.append(
                "limits.max_connections_per_address: must not exceed limits.max_connections "
                f"({self.max_connections}), got {self.max_connections_per_address}"
            )
        return found


@dataclass(frozen=True, slots=True)
class Snapshot:
    """``snapshot:`` in the YAML: snapshot the state machine every ``every_entries`` applies."""

    every_entries: int = at_least(1, default=10000)

    def problems(self) -> list[str]:
        return []


@dataclass(frozen=True, slots=True)
class History:
    """``history:`` in the YAML: the window of recent changes watches start from. It is part of
    the state machine (every node must run with the same values, like the quota)."""

    max_revisions: int = at_least(1, default=10000)
    """Revisions whose changes are kept; older ones are compacted as new ones are written."""
    max_bytes: int = at_least(1024, default=64 << 20)
    """Keys and values of the changes kept (plus 40 bytes per change), in bytes."""

    def problems(self) -> list[str]:
        return []


@dataclass(frozen=True, slots=True)
class Watch:
    """``watch:`` in the YAML: ``GET /watch`` streams (per node, not replicated)."""

    progress_ms: int = at_least(100, default=5000)
    """An idle stream gets an ``event: progress`` with the current revision this often."""
    buffer_events: int = at_least(1, default=1000)
    """Events one watcher may have queued and unsent; a watcher further behind is cancelled."""
    max_watchers: int = at_least(1, default=10000)
    """Open watches on this node; one more -> 503."""

    @property
    def progress_seconds(self) -> float:
        return self.progress_ms / 1000

    def problems(self) -> list[str]:
        return []


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class LogFormat(StrEnum):
    LOGFMT = "logfmt"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class LogSettings:
    """``log:`` in the YAML: one line per event on stderr."""

    level: LogLevel = LogLevel.INFO
    format: LogFormat = LogFormat.LOGFMT
