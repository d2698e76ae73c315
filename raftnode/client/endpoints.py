"""Where the client sends requests: node URLs or a VIP, and how (TLS, a bearer token)."""

from __future__ import annotations

import os
import ssl
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

ENDPOINTS_ENV = "RAFTNODE_ENDPOINTS"
"""Comma-separated endpoint URLs, used when the caller names none."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One node or balancer: ``http://host:port`` or ``https://host:port``."""

    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def host_header(self) -> str:
        default = 443 if self.tls else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    def __str__(self) -> str:
        return self.url


def parse_endpoint(text: str) -> Endpoint:
    """``http://h:p``, ``https://h:p`` or ``h:p`` (plain HTTP); ValueError naming the problem."""
    raw = text.strip()
    if not raw:
        raise ValueError("an endpoint is empty")
    if "://" not in raw:
        raw = "http://" + raw
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"endpoint {text!r}: the scheme must be http or https")
    if not parts.hostname:
        raise ValueError(f"endpoint {text!r} names no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"endpoint {text!r}: give scheme://host:port only, without a path")
    if parts.username or parts.password:
        raise ValueError(f"endpoint {text!r}: credentials go in the token option, not the URL")
    try:
        port = parts.port
    except ValueError as e:
        raise ValueError(f"endpoint {text!r}: {e}") from e
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return Endpoint(parts.scheme, parts.hostname, port)


def parse_endpoints(endpoints: str | Sequence[str] | None) -> list[Endpoint]:
    """Endpoints from a list, a comma-separated string, or (None) ``$RAFTNODE_ENDPOINTS``.
    Duplicates are dropped; order is kept (the first one is tried first)."""
    if endpoints is None:
        endpoints = os.environ.get(ENDPOINTS_ENV, "")
        if not endpoints.strip():
            raise ValueError(
                f"no endpoints: pass a list of node URLs (or the VIP) or set {ENDPOINTS_ENV}"
            )
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    found: list[Endpoint] = []
    for item in items:
        if isinstance(endpoints, str) and not item.strip():
            continue
        endpoint = parse_endpoint(item)
        if endpoint not in found:
            found.append(endpoint)
    if not found:
        raise ValueError("no endpoints: the list is empty")
    return found


def tls_context(
    ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> ssl.SSLContext:
    """A client TLS context: verify the nodes against ``ca_file`` (the system's CAs when None),
    and present ``cert_file``/``key_file`` when the cluster asks for a client certificate."""
    if key_file and not cert_file:
        raise ValueError("a client key needs its certificate (cert_file)")
    context = ssl.create_default_context(cafile=ca_file)
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context
