"""Client identities: roles, bearer tokens, the token file, and the authorization decision.

A token is 256 random bits (``rn_`` + URL-safe base64); hosts keep only its SHA-256, so a
stolen token file grants nothing. The token file is YAML: a list of principals, one per line
as ``raftnode token create`` prints them::

    - {"name": "app", "role": "write", "prefixes": ["app/"], "sha256": "<64 hex>"}
    - {"name": "backup", "role": "admin", "certificate": "backup.example.net"}

``sha256`` authenticates a bearer token; ``certificate`` names a client certificate's common
name or DNS/URI subject alternative name (with ``tls.client_ca_file``). Roles nest: ``admin``
implies ``write`` implies ``read``. ``prefixes`` (optional) limits the principal to keys that
start with one of them, as etcd's roles over key ranges do; an empty list means every key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import yaml

TOKEN_PREFIX = "rn_"
TOKEN_BYTES = 32
MAX_TOKEN_FILE_BYTES = 4 << 20
MAX_NAME_CHARS = 128
_ENTRY_KEYS = {"name", "role", "prefixes", "sha256", "certificate"}


class Role(IntEnum):
    """What a principal may do; a higher role includes every lower one."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"must be read, write or admin, got {text!r}") from None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: a name, a role and (optionally) the key prefixes it may touch."""

    name: str
    role: Role
    prefixes: tuple[str, ...] = ()
    """Empty: every key."""

    def covers_key(self, key: str) -> bool:
        return not self.prefixes or any(key.startswith(p) for p in self.prefixes)

    def covers_range(self, prefix: str) -> bool:
        """Every key starting with ``prefix`` lies inside one of this principal's prefixes."""
        return not self.prefixes or any(prefix.startswith(p) for p in self.prefixes)


@dataclass(frozen=True, slots=True)
class TokenEntry:
    principal: Principal
    digest: bytes | None = None
    """SHA-256 of the token; None for an entry that only maps a certificate."""
    certificate: str | None = None


@dataclass(frozen=True, slots=True)
class TokenTable:
    """The principals of a token file, looked up by token or by certificate name."""

    entries: tuple[TokenEntry, ...] = ()
    _by_certificate: dict[str, Principal] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, entries: Iterable[TokenEntry]) -> TokenTable:
        entries = tuple(entries)
        by_cert = {e.certificate: e.principal for e in entries if e.certificate is not None}
        return cls(entries, by_cert)

    def by_token(self, token: str) -> Principal | None:
        """The principal whose hash matches ``token``: every entry is compared, in constant
        time, so the answer's timing says nothing about the table."""
        digest = token_digest(token)
        found: Principal | None = None
        for entry in self.entries:
            if entry.digest is not None and hmac.compare_digest(entry.digest, digest):
                found = entry.principal
        return found

    def by_certificate(self, names: Iterable[str]) -> Principal | None:
        for name in names:
            principal = self._by_certificate.get(name)
            if principal is not None:
                return principal
        return None

    def __len__(self) -> int:
        return len(self.entries)


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """``auth:`` in the node config (see ``docs/configuration.md``)."""

    token_file: Path | None = None
    anonymous_role: Role | None = None
    """The role of a request that carries no credentials; None refuses it (401)."""
    status_role: Role | None = None
    """The role ``/status`` and ``/metrics`` on the health listener need; None: open."""


class TokenFileError(ValueError):
    """The token file is unusable; ``problems`` names each bad entry."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def token_line(name: str, role: Role, prefixes: Iterable[str], token: str) -> str:
    """The token file line for ``token`` (JSON, which is YAML): its hash, never the token."""
    entry: dict[str, Any] = {"name": name, "role": role.label}
    prefixes = list(prefixes)
    if prefixes:
        entry["prefixes"] = prefixes
    entry["sha256"] = token_digest(token).hex()
    return "- " + json.dumps(entry, ensure_ascii=False)


def _entry(raw: Any, where: str, problems: list[str]) -> TokenEntry | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a mapping with name, role and sha256 or certificate")
        return None
    bad = len(problems)
    unknown = sorted(str(k) for k in raw if k not in _ENTRY_KEYS)
    if unknown:
        allowed = ", ".join(sorted(_ENTRY_KEYS))
        problems.append(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {allowed})")
    name = raw.get("name")
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
        problems.append(f"{where}.name: must be a non-empty string of at most {MAX_NAME_CHARS}")
        name = ""
    role = Role.READ
    try:
        role = Role.parse(str(raw.get("role", "")))
    except ValueError as e:
        problems.append(f"{where}.role: {e}")
    prefixes = raw.get("prefixes", [])
    if prefixes is None:
        prefixes = []
    if not isinstance(prefixes, list) or not all(isinstance(p, str) and p for p in prefixes):
        problems.append(f"{where}.prefixes: must be a list of non-empty strings")
        prefixes = []
    digest_text, certificate = raw.get("sha256"), raw.get("certificate")
    if (digest_text is None) == (certificate is None):
        problems.append(f"{where}: needs exactly one of sha256 (a token) or certificate (a name)")
    digest = None
    if digest_text is not None:
        if not isinstance(digest_text, str) or len(digest_text) != 64:
            problems.append(f"{where}.sha256: must be 64 hex digits (raftnode token create)")
        else:
            try:
                digest = bytes.fromhex(digest_text)
            except ValueError:
                problems.append(f"{where}.sha256: must be 64 hex digits (raftnode token create)")
    if certificate is not None and (not isinstance(certificate, str) or not certificate):
        problems.append(f"{where}.certificate: must be a certificate's CN or SAN")
    if len(problems) > bad:
        return None
    return TokenEntry(Principal(name, role, tuple(prefixes)), digest, certificate)


def parse_token_file(raw: Any) -> TokenTable:
    """Validate a parsed token file; raises ``TokenFileError`` naming every bad entry."""
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise TokenFileError([f"(top level): must be a list of entries, got {type(raw).__name__}"])
    problems: list[str] = []
    entries = [e for i, item in enumerate(raw) if (e := _entry(item, f"[{i}]", problems))]
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        key = entry.digest.hex() if entry.digest is not None else f"cert:{entry.certificate}"
        if key in seen:
            problems.append(f"[{i}]: the same token or certificate as entry [{seen[key]}]")
        seen.setdefault(key, i)
    if problems:
        raise TokenFileError(problems)
    return TokenTable.of(entries)


def load_token_file(path: Path) -> TokenTable:
    """Read and validate the token file; raises ``TokenFileError`` saying what is wrong."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_TOKEN_FILE_BYTES + 1)
    except OSError as e:
        raise TokenFileError([f"{path}: cannot read: {e.strerror}"]) from e
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise TokenFileError([f"{path}: larger than {MAX_TOKEN_FILE_BYTES} bytes"])
    try:
        raw = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError, ValueError) as e:
        raise TokenFileError([f"{path}: not a YAML token list: {e}"]) from e
    try:
        return parse_token_file(raw)
    except TokenFileError as e:
        raise TokenFileError([f"{path}: {p}" for p in e.problems]) from e
