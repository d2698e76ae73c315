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
    max_snapshot_bytes: int = at_least(1 << 20, default=16 << 30)
    """The largest snapshot file a node accepts to restore or install, in bytes."""

    def problems(self) -> list[str]:
        return []


@dataclass(frozen=True, slots=True)
class Snapshot:
    """``snapshot:`` in the YAML: snapshot the state machine every ``every_entries`` applies."""

    every_entries: int = at_least(1, default=10000)

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
