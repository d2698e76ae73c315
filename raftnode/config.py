"""The node's YAML configuration: one file per node, validated on load.

Every validation error names the offending key (dotted path) and says what is wrong, so
``raftnode check-config`` (and Ansible's ``validate:``) can point at the exact line to fix.
Defaults and bounds come from ``raftnode.defaults``; each top-level section has its own small
parser below, and ``parse_config`` only puts their results together.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from raftnode.cpu_scheduling import DEFAULT_POLICY as DEFAULT_CPU_POLICY
from raftnode.cpu_scheduling import POLICIES as CPU_POLICIES
from raftnode.defaults import (
    History,
    Limits,
    LogFormat,
    LogLevel,
    LogSettings,
    Snapshot,
    Timing,
    Watch,
)
from raftnode.tls import ClientCertificates, TlsSettings, check_files
from raftnode.tokens import AuthSettings, Role, TokenFileError, load_token_file
from raftnode.transport.auth import MAC_VERSION, MAX_VERSION, MIN_VERSION
from raftnode.transport.peer_tls import PeerTlsSettings
from raftnode.transport.peer_tls import check_files as check_peer_files

__all__ = [
    "Address",
    "ConfigError",
    "Limits",
    "LogSettings",
    "Member",
    "NodeConfig",
    "Snapshot",
    "Timing",
    "load_config",
    "parse_config",
]


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

    @classmethod
    def parse(cls, text: str) -> Address:
        """``"host:port"`` or ``"[v6 host]:port"``; raises ``ValueError`` saying what is wrong."""
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"must be host:port, got {text!r}")
        if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise ValueError(f"port must be 1-65535, got {port!r}")
        return cls(host.strip("[]"), int(port))


@dataclass(frozen=True, slots=True)
class Member:
    """A node of the initial cluster, with the addresses the other nodes use to reach it."""

    id: int
    name: str
    peer: Address
    client: Address


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
    initial_cluster_state: str = "new"
    initial_cluster_token: str = ""
    """Mixed into the cluster id at bootstrap (etcd's meaning); the same on every member."""
    """etcd's meaning: ``new`` bootstraps an empty data directory from ``cluster``; ``existing``
    never does: the node waits to be added (``raftnode member add``) and contacted."""
    timing: Timing = field(default_factory=Timing)
    limits: Limits = field(default_factory=Limits)
    snapshot: Snapshot = field(default_factory=Snapshot)
    history: History = field(default_factory=History)
    watch: Watch = field(default_factory=Watch)
    log: LogSettings = field(default_factory=LogSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    tls: TlsSettings | None = None
    """HTTPS on the client and health listeners; None: plain HTTP."""
    peer_tls: PeerTlsSettings | None = None
    """Mutual TLS 1.3 on the Raft port; None: the HMAC handshake over plain TCP."""
    peer_min_protocol: int = MIN_VERSION
    """The oldest peer protocol this node speaks, both ways; 8 (``MAC_VERSION``) refuses the
    versions whose frames carry no MAC, once every member runs a release that speaks 8."""
    cpu_scheduling: str = DEFAULT_CPU_POLICY
    """``batch`` or ``inherit`` (``raftnode.cpu_scheduling``); applied by ``raftnode serve``."""

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


_NO_ADDRESS = Address("", 0)
MAX_INTEGER = (1 << 63) - 1
"""The largest integer any setting takes: ids and counters are stored as 64-bit integers."""
_Choice = TypeVar("_Choice", LogLevel, LogFormat)
_Section = TypeVar("_Section", Timing, Limits, Snapshot, History, Watch)


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
        elif v > MAX_INTEGER:
            self.fail(path, f"must be <= {MAX_INTEGER}, got {v}")
            return default if default is not None else minimum
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
            return _NO_ADDRESS
        try:
            return Address.parse(text)
        except ValueError as e:
            self.fail(path, str(e))
            return _NO_ADDRESS

    def choice(self, raw: dict[str, Any], key: str, path: str, default: _Choice) -> _Choice:
        text = self.string(raw, key, path, default.value).lower()
        allowed = type(default)
        try:
            return allowed(text)
        except ValueError:
            self.fail(path, f"must be one of {', '.join(allowed)}, got {text!r}")
            return default


def _integer_section(c: _Checker, raw: Any, name: str, section: type[_Section]) -> _Section:
    """A section of integers (``timing``, ``limits``, ``snapshot``) with its defaults and bounds."""
    given = c.mapping(raw, name, {f.name for f in fields(section)})
    defaults = section()
    values = {
        f.name: c.integer(
            given, f.name, f"{name}.{f.name}", getattr(defaults, f.name), f.metadata["minimum"]
        )
        for f in fields(section)
    }
    parsed = section(**values)
    c.problems.extend(parsed.problems())
    return parsed


def _log_section(c: _Checker, raw: Any) -> LogSettings:
    given = c.mapping(raw, "log", {f.name for f in fields(LogSettings)})
    default = LogSettings()
    return LogSettings(
        level=c.choice(given, "level", "log.level", default.level),
        format=c.choice(given, "format", "log.format", default.format),
    )


def _path(text: str, base_dir: Path | None) -> Path:
    path = Path(text)
    return base_dir / path if base_dir is not None and not path.is_absolute() else path


SYSTEMD_CREDENTIALS_ROOT = Path("/run/credentials")
"""systemd copies a unit's ``LoadCredential=`` files into ``/run/credentials/<unit>/`` when
the unit starts, so before that (``raftnode check-config`` run by Ansible's ``validate:``)
the path a config names there does not exist yet."""


def _credential(path: Path, credentials_dir: Path | None) -> Path:
    """``path`` itself, or, for a file under ``/run/credentials/<unit>/`` while checking with
    ``credentials_dir``, the file of the same name there (the source ``LoadCredential=``
    copies from)."""
    if credentials_dir is not None and path.parent.parent == SYSTEMD_CREDENTIALS_ROOT:
        return credentials_dir / path.name
    return path


def _listen_section(c: _Checker, raw: Any) -> tuple[Address, Address, Address]:
    """``listen: {client, health, peer}``: three addresses on three different ports."""
    given = c.mapping(raw, "listen", {"client", "health", "peer"})
    client = c.address(given, "client", "listen.client")
    health = c.address(given, "health", "listen.health")
    peer = c.address(given, "peer", "listen.peer")
    ports = [a.port for a in (client, health, peer) if a.port]
    if len(set(ports)) != len(ports):
        c.fail("listen", f"client, health and peer ports must differ, got {ports}")
    return client, health, peer


def _member(c: _Checker, raw: Any, path: str) -> Member | None:
    given = c.mapping(raw, path, {"id", "name", "peer", "client"})
    if not given:
        if raw is None or isinstance(raw, dict):
            c.fail(path, "must be a mapping with id, name, peer, client")
        return None
    member_id = c.integer(given, "id", f"{path}.id", None, 1)
    return Member(
        id=member_id,
        name=c.string(given, "name", f"{path}.name", f"n{member_id}"),
        peer=c.address(given, "peer", f"{path}.peer"),
        client=c.address(given, "client", f"{path}.client"),
    )


def _cluster_section(c: _Checker, raw: Any, node_id: int) -> tuple[Member, ...]:
    """``cluster:``: the initial members, unique ids and names, this node among them."""
    if not isinstance(raw, list) or not raw:
        c.fail("cluster", "must be a non-empty list of {id, name, peer, client}")
        return ()
    members = [m for i, item in enumerate(raw) if (m := _member(c, item, f"cluster[{i}]"))]
    ids = [m.id for m in members]
    if len(set(ids)) != len(ids):
        c.fail("cluster", f"member ids must be unique, got {ids}")
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        c.fail("cluster", f"member names must be unique, got {names}")
    if members and node_id not in ids:
        c.fail("node_id", f"{node_id} does not appear in cluster (ids: {ids})")
    return tuple(members)


def _secret(c: _Checker, top: dict[str, Any], base_dir: Path | None) -> tuple[bytes | None, bool]:
    """``secret_file`` and ``insecure``: the peer secret (None only when insecure or when
    ``peer_tls`` authenticates the peers)."""
    insecure = top.get("insecure", False)
    if not isinstance(insecure, bool):
        c.fail("insecure", f"must be true or false, got {insecure!r}")
        insecure = False
    if insecure and top.get("peer_tls") is not None:
        c.fail(
            "insecure",
            "cannot be true with peer_tls (peer_tls authenticates every peer by its "
            "certificate; insecure turns peer authentication off): remove one of them",
        )
    secret_file = top.get("secret_file")
    if secret_file is None:
        if not insecure and top.get("peer_tls") is None:
            c.fail(
                "secret_file",
                "is required unless peer_tls is set or `insecure: true` "
                "(peers authenticate with it)",
            )
        return None, insecure
    if not isinstance(secret_file, str) or not secret_file:
        c.fail("secret_file", f"must be a path, got {secret_file!r}")
        return None, insecure
    path = _path(secret_file, base_dir)
    try:
        secret = path.read_bytes().strip()
    except OSError as e:
        c.fail("secret_file", f"cannot read {path}: {e.strerror}")
        return None, insecure
    if len(secret) < 16:
        c.fail("secret_file", f"{path} must hold at least 16 bytes of secret")
    return secret, insecure


ROLE_CHOICES = ("none", "read", "write", "admin")


def _role(c: _Checker, given: dict[str, Any], key: str) -> Role | None:
    text = given.get(key, "none")
    if not isinstance(text, str) or text not in ROLE_CHOICES:
        c.fail(f"auth.{key}", f"must be one of {', '.join(ROLE_CHOICES)}, got {text!r}")
        return None
    return None if text == "none" else Role.parse(text)


def _auth_section(c: _Checker, raw: Any, base_dir: Path | None) -> AuthSettings:
    """``auth:``: a token file, or an explicit choice of what a request without one may do."""
    given = c.mapping(raw, "auth", {"token_file", "anonymous_role", "status_role"})
    if "token_file" not in given and "anonymous_role" not in given:
        c.fail(
            "auth",
            "set auth.token_file (bearer tokens: raftnode token create) or choose anonymous "
            "access explicitly with auth.anonymous_role (none, read, write or admin)",
        )
    token_file = None
    if "token_file" in given:
        text = c.string(given, "token_file", "auth.token_file", None)
        token_file = _path(text, base_dir) if text else None
        if token_file is not None and not token_file.is_file():
            c.fail("auth.token_file", f"{token_file} does not exist or is not a file")
        elif token_file is not None:
            try:
                load_token_file(token_file)
            except TokenFileError as e:
                c.problems.extend(f"auth.token_file: {p}" for p in e.problems)
    return AuthSettings(
        token_file=token_file,
        anonymous_role=_role(c, given, "anonymous_role"),
        status_role=_role(c, given, "status_role"),
    )


def _tls_section(
    c: _Checker, raw: Any, base_dir: Path | None, credentials_dir: Path | None
) -> TlsSettings | None:
    """``tls:``: certificate, key and CA files (HTTPS on the client and health listeners)."""
    if raw is None:
        return None
    given = c.mapping(raw, "tls", {"cert_file", "key_file", "ca_file", "client_certificates"})
    files = {}
    for key in ("cert_file", "key_file", "ca_file"):
        text = c.string(given, key, f"tls.{key}", None)
        files[key] = _credential(_path(text or ".", base_dir), credentials_dir)
    mode = c.string(given, "client_certificates", "tls.client_certificates", "none")
    try:
        client = ClientCertificates(mode)
    except ValueError:
        c.fail(
            "tls.client_certificates",
            f"must be one of {', '.join(ClientCertificates)}, got {mode!r}",
        )
        client = ClientCertificates.NONE
    settings = TlsSettings(files["cert_file"], files["key_file"], files["ca_file"], client)
    if not c.problems:
        c.problems.extend(check_files(settings))
    return settings


def _peer_tls_section(
    c: _Checker,
    raw: Any,
    base_dir: Path | None,
    credentials_dir: Path | None,
    node_id: int,
    cluster: tuple[Member, ...],
) -> PeerTlsSettings | None:
    """``peer_tls:``: this node's peer certificate (naming ``raftnode://<cluster>/node/<id>``),
    its key and the cluster CA (mutual TLS 1.3 on the Raft port)."""
    if raw is None:
        return None
    given = c.mapping(raw, "peer_tls", {"cert_file", "key_file", "ca_file"})
    files = {}
    for key in ("cert_file", "key_file", "ca_file"):
        text = c.string(given, key, f"peer_tls.{key}", None)
        files[key] = _credential(_path(text or ".", base_dir), credentials_dir)
    settings = PeerTlsSettings(files["cert_file"], files["key_file"], files["ca_file"])
    if not c.problems:
        me = next((m for m in cluster if m.id == node_id), None)
        host = me.peer.host if me is not None and me.peer.host else None
        c.problems.extend(check_peer_files(settings, node_id, host))
    return settings


def _peer_min_protocol(c: _Checker, top: dict[str, Any]) -> int:
    """``peer_min_protocol``: an integer in ``MIN_VERSION..MAX_VERSION``."""
    given = top.get("peer_min_protocol", MIN_VERSION)
    if isinstance(given, bool) or not isinstance(given, int):
        c.fail("peer_min_protocol", f"must be an integer, got {given!r}")
        return MIN_VERSION
    if not MIN_VERSION <= given <= MAX_VERSION:
        c.fail(
            "peer_min_protocol",
            f"must be between {MIN_VERSION} and {MAX_VERSION} (the peer protocols this release "
            f"speaks; {MAC_VERSION} refuses peers whose frames carry no MAC), got {given}",
        )
        return MIN_VERSION
    return given


CLUSTER_STATES = ("new", "existing")

TOP_KEYS = {
    "node_id",
    "data_dir",
    "listen",
    "cluster",
    "secret_file",
    "insecure",
    "initial_cluster_state",
    "initial_cluster_token",
    "timing",
    "limits",
    "snapshot",
    "history",
    "watch",
    "log",
    "auth",
    "tls",
    "peer_tls",
    "peer_min_protocol",
    "cpu_scheduling",
}


def parse_config(
    raw: Any, *, base_dir: Path | None = None, credentials_dir: Path | None = None
) -> NodeConfig:
    """Validate a parsed YAML document and build a ``NodeConfig``; raises ``ConfigError``.

    ``credentials_dir`` (checking only, before the unit starts): TLS files named under
    ``/run/credentials/<unit>/`` are read from there instead (the ``LoadCredential=`` sources).
    """
    if not isinstance(raw, dict):
        raise ConfigError([f"(top level): must be a mapping, got {type(raw).__name__}"])
    c = _Checker()
    top = c.mapping(raw, "", TOP_KEYS)
    node_id = c.integer(top, "node_id", "node_id", None, 1)
    data_dir = _path(c.string(top, "data_dir", "data_dir", None) or ".", base_dir)
    listen_client, listen_health, listen_peer = _listen_section(c, top.get("listen"))
    cluster = _cluster_section(c, top.get("cluster"), node_id)
    secret, insecure = _secret(c, top, base_dir)
    state = c.string(top, "initial_cluster_state", "initial_cluster_state", "new")
    if state not in CLUSTER_STATES:
        c.fail("initial_cluster_state", f"must be new or existing, got {state!r}")
    cpu_policy = c.string(top, "cpu_scheduling", "cpu_scheduling", DEFAULT_CPU_POLICY)
    if cpu_policy not in CPU_POLICIES:
        c.fail("cpu_scheduling", f"must be {' or '.join(CPU_POLICIES)}, got {cpu_policy!r}")
    token = top.get("initial_cluster_token", "")
    if not isinstance(token, str):
        c.fail("initial_cluster_token", f"must be a string, got {token!r}")
        token = ""
    config = NodeConfig(
        node_id=node_id,
        data_dir=data_dir,
        listen_client=listen_client,
        listen_health=listen_health,
        listen_peer=listen_peer,
        cluster=cluster,
        secret=secret,
        insecure=insecure,
        initial_cluster_state=state,
        initial_cluster_token=token,
        timing=_integer_section(c, top.get("timing"), "timing", Timing),
        limits=_integer_section(c, top.get("limits"), "limits", Limits),
        snapshot=_integer_section(c, top.get("snapshot"), "snapshot", Snapshot),
        history=_integer_section(c, top.get("history"), "history", History),
        watch=_integer_section(c, top.get("watch"), "watch", Watch),
        log=_log_section(c, top.get("log")),
        auth=_auth_section(c, top.get("auth"), base_dir),
        tls=_tls_section(c, top.get("tls"), base_dir, credentials_dir),
        peer_tls=_peer_tls_section(
            c, top.get("peer_tls"), base_dir, credentials_dir, node_id, cluster
        ),
        peer_min_protocol=_peer_min_protocol(c, top),
        cpu_scheduling=cpu_policy,
    )
    if c.problems:
        raise ConfigError(c.problems)
    return config


MAX_CONFIG_BYTES = 1 << 20
"""A node's configuration is a few hundred bytes; anything past this is not one."""


def load_config(path: str | os.PathLike[str], *, credentials_dir: Path | None = None) -> NodeConfig:
    """Read and validate a YAML config file; raises ``ConfigError`` naming every bad key
    (``credentials_dir``: see ``parse_config``)."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError([f"{p}: cannot read: {e.strerror}"]) from e
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{p}: larger than {MAX_CONFIG_BYTES} bytes: not a node config"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError([f"{p}: not UTF-8 text (byte offset {e.start})"]) from e
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError([f"{p}: not valid YAML: {e}"]) from e
    except RecursionError as e:
        raise ConfigError([f"{p}: not a node config: nested too deeply"]) from e
    except ValueError as e:  # e.g. an integer of thousands of digits
        raise ConfigError([f"{p}: not a node config: {e}"]) from e
    return parse_config(raw, base_dir=p.parent.resolve(), credentials_dir=credentials_dir)
