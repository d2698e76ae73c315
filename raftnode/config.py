"""The node's YAML configuration: one file per node, validated on load.

Every validation error names the offending key (dotted path) and says what is wrong, so
``raftnode check-config`` (and Ansible's ``validate:``) can point at the exact line to fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("logfmt", "json")


class ConfigError(ValueError):
    """One or more problems in a configuration file; ``problems`` lists them all."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Address:
    """A ``host:port`` pair."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Member:
    """A node of the initial cluster, with the addresses the other nodes use to reach it."""

    id: int
    name: str
    peer: Address
    client: Address


@dataclass(frozen=True, slots=True)
class Timing:
    tick_ms: int = 50
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    request_timeout_ms: int = 5000
    shutdown_transfer_ms: int = 3000


@dataclass(frozen=True, slots=True)
class Limits:
    max_key_bytes: int = 1024
    max_value_bytes: int = 1 << 20
    max_request_bytes: int = 2 << 20


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """A validated node configuration (see ``docs/configuration.md`` for every key)."""

    node_id: int
    data_dir: Path
    listen_client: Address
    listen_health: Address
    listen_peer: Address
    cluster: tuple[Member, ...]
    secret: bytes | None
    insecure: bool = False
    timing: Timing = field(default_factory=Timing)
    limits: Limits = field(default_factory=Limits)
    snapshot_every_entries: int = 10000
    log_level: str = "info"
    log_format: str = "logfmt"

    def member(self, node_id: int) -> Member | None:
        for m in self.cluster:
            if m.id == node_id:
                return m
        return None

    @property
    def me(self) -> Member:
        m = self.member(self.node_id)
        assert m is not None  # guaranteed by validation
        return m


class _Checker:
    """Collects problems while walking the raw YAML mapping."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, key: str, what: str) -> None:
        self.problems.append(f"{key}: {what}")

    def mapping(self, raw: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.fail(key, f"must be a mapping, got {type(raw).__name__}")
            return {}
        for k in raw:
            if k not in allowed:
                self.fail(
                    f"{key}.{k}" if key else str(k),
                    f"unknown key (allowed: {', '.join(sorted(allowed))})",
                )
        return raw

    def integer(
        self, raw: dict[str, Any], key: str, path: str, default: int | None, minimum: int
    ) -> int:
        if key not in raw:
            if default is None:
                self.fail(path, "is required")
                return minimum
            return default
        v = raw[key]
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(path, f"must be an integer, got {v!r}")
            return default if default is not None else minimum
        if v < minimum:
            self.fail(path, f"must be >= {minimum}, got {v}")
        return v

    def string(self, raw: dict[str, Any], key: str, path: str, default: str | None) -> str:
        if key not in raw or raw[key] is None:
            if default is None:
                self.fail(path, "is required")
                return ""
            return default
        v = raw[key]
        if not isinstance(v, str) or not v:
            self.fail(path, f"must be a non-empty string, got {v!r}")
            return default or ""
        return v

    def address(self, raw: dict[str, Any], key: str, path: str) -> Address:
        text = self.string(raw, key, path, None)
        if not text:
            return Address("", 0)
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            self.fail(path, f"must be host:port, got {text!r}")
            return Address("", 0)
        host = host.strip("[]")
        if not port.isdigit() or not 0 < int(port) < 65536:
            self.fail(path, f"port must be 1-65535, got {port!r}")
            return Address(host, 0)
        return Address(host, int(port))


TOP_KEYS = {
    "node_id",
    "data_dir",
    "listen",
    "cluster",
    "secret_file",
    "insecure",
    "timing",
    "limits",
    "snapshot",
    "log",
}


def parse_config(raw: Any, *, base_dir: Path | None = None) -> NodeConfig:
    """Validate a parsed YAML document and build a ``NodeConfig``; raises ``ConfigError``."""
    c = _Checker()
    if not isinstance(raw, dict):
        raise ConfigError([f"(top level): must be a mapping, got {type(raw).__name__}"])
    top = c.mapping(raw, "", TOP_KEYS)
    node_id = c.integer(top, "node_id", "node_id", None, 1)
    data_dir = Path(c.string(top, "data_dir", "data_dir", None) or ".")
    if base_dir is not None and not data_dir.is_absolute():
        data_dir = base_dir / data_dir

    listen = c.mapping(top.get("listen"), "listen", {"client", "health", "peer"})
    listen_client = c.address(listen, "client", "listen.client")
    listen_health = c.address(listen, "health", "listen.health")
    listen_peer = c.address(listen, "peer", "listen.peer")
    ports = [a.port for a in (listen_client, listen_health, listen_peer) if a.port]
    if len(set(ports)) != len(ports):
        c.fail("listen", f"client, health and peer ports must differ, got {ports}")

    members: list[Member] = []
    raw_cluster = top.get("cluster")
    if not isinstance(raw_cluster, list) or not raw_cluster:
        c.fail("cluster", "must be a non-empty list of {id, name, peer, client}")
        raw_cluster = []
    for i, item in enumerate(raw_cluster):
        path = f"cluster[{i}]"
        m = c.mapping(item, path, {"id", "name", "peer", "client"})
        if not m:
            if item is None or isinstance(item, dict):
                c.fail(path, "must be a mapping with id, name, peer, client")
            continue
        mid = c.integer(m, "id", f"{path}.id", None, 1)
        members.append(
            Member(
                id=mid,
                name=c.string(m, "name", f"{path}.name", f"n{mid}"),
                peer=c.address(m, "peer", f"{path}.peer"),
                client=c.address(m, "client", f"{path}.client"),
            )
        )
    ids = [m.id for m in members]
    if len(set(ids)) != len(ids):
        c.fail("cluster", f"member ids must be unique, got {ids}")
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        c.fail("cluster", f"member names must be unique, got {names}")
    if members and node_id not in ids:
        c.fail("node_id", f"{node_id} does not appear in cluster (ids: {ids})")

    insecure = top.get("insecure", False)
    if not isinstance(insecure, bool):
        c.fail("insecure", f"must be true or false, got {insecure!r}")
        insecure = False
    secret: bytes | None = None
    secret_file = top.get("secret_file")
    if secret_file is not None:
        if not isinstance(secret_file, str) or not secret_file:
            c.fail("secret_file", f"must be a path, got {secret_file!r}")
        else:
            sp = Path(secret_file)
            if base_dir is not None and not sp.is_absolute():
                sp = base_dir / sp
            try:
                secret = sp.read_bytes().strip()
            except OSError as e:
                c.fail("secret_file", f"cannot read {sp}: {e.strerror}")
            else:
                if len(secret) < 16:
                    c.fail("secret_file", f"{sp} must hold at least 16 bytes of secret")
    elif not insecure:
        c.fail("secret_file", "is required unless `insecure: true` (peers authenticate with it)")

    t = c.mapping(
        top.get("timing"),
        "timing",
        {
            "tick_ms",
            "election_ticks",
            "heartbeat_ticks",
            "request_timeout_ms",
            "shutdown_transfer_ms",
        },
    )
    timing = Timing(
        tick_ms=c.integer(t, "tick_ms", "timing.tick_ms", 50, 1),
        election_ticks=c.integer(t, "election_ticks", "timing.election_ticks", 10, 2),
        heartbeat_ticks=c.integer(t, "heartbeat_ticks", "timing.heartbeat_ticks", 1, 1),
        request_timeout_ms=c.integer(t, "request_timeout_ms", "timing.request_timeout_ms", 5000, 1),
        shutdown_transfer_ms=c.integer(
            t, "shutdown_transfer_ms", "timing.shutdown_transfer_ms", 3000, 0
        ),
    )
    if timing.heartbeat_ticks >= timing.election_ticks:
        c.fail(
            "timing.heartbeat_ticks",
            f"must be smaller than timing.election_ticks ({timing.election_ticks})",
        )

    lim = c.mapping(
        top.get("limits"), "limits", {"max_key_bytes", "max_value_bytes", "max_request_bytes"}
    )
    limits = Limits(
        max_key_bytes=c.integer(lim, "max_key_bytes", "limits.max_key_bytes", 1024, 1),
        max_value_bytes=c.integer(lim, "max_value_bytes", "limits.max_value_bytes", 1 << 20, 1),
        max_request_bytes=c.integer(
            lim, "max_request_bytes", "limits.max_request_bytes", 2 << 20, 64
        ),
    )

    snap = c.mapping(top.get("snapshot"), "snapshot", {"every_entries"})
    every = c.integer(snap, "every_entries", "snapshot.every_entries", 10000, 1)

    lg = c.mapping(top.get("log"), "log", {"level", "format"})
    level = c.string(lg, "level", "log.level", "info").lower()
    if level not in LOG_LEVELS:
        c.fail("log.level", f"must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    fmt = c.string(lg, "format", "log.format", "logfmt").lower()
    if fmt not in LOG_FORMATS:
        c.fail("log.format", f"must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")

    if c.problems:
        raise ConfigError(c.problems)
    return NodeConfig(
        node_id=node_id,
        data_dir=data_dir,
        listen_client=listen_client,
        listen_health=listen_health,
        listen_peer=listen_peer,
        cluster=tuple(members),
        secret=secret,
        insecure=insecure,
        timing=timing,
        limits=limits,
        snapshot_every_entries=every,
        log_level=level,
        log_format=fmt,
    )


def load_config(path: str | os.PathLike[str]) -> NodeConfig:
    """Read and validate a YAML config file; raises ``ConfigError`` naming every bad key."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError([f"{p}: cannot read: {e.strerror}"]) from e
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError([f"{p}: not valid YAML: {e}"]) from e
    return parse_config(raw, base_dir=p.parent.resolve())
