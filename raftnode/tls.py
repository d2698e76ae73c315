"""HTTPS for the client and health listeners, and for the node's own client connections.

``ServerTls`` builds the listeners' ``ssl.SSLContext`` from ``tls:`` (TLS 1.2 at least; 1.3 is
what OpenSSL negotiates first) and reloads the certificate, key and CA on SIGHUP without a
restart: the listeners hold one *front* context whose SNI callback (OpenSSL calls it for every
handshake, SNI or not) moves each new connection onto the context built last. A connection
already open keeps its certificate; a bad file is refused with a log line and the context in
force stays. ``client_context`` is what the forwarder and the CLI use to trust the cluster CA.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class ClientCertificates(StrEnum):
    """Whether the listeners ask clients for a certificate (verified against ``ca_file``)."""

    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """``tls:`` in the node config."""

    cert_file: Path
    key_file: Path
    ca_file: Path
    client_certificates: ClientCertificates = ClientCertificates.NONE


class TlsError(ValueError):
    """A certificate, key or CA file that cannot be used; the message says which and why."""


def _load_chain(ctx: ssl.SSLContext, settings: TlsSettings) -> None:
    try:
        ctx.load_cert_chain(settings.cert_file, settings.key_file)
    except FileNotFoundError as e:
        # ssl leaves e.filename unset: name the file that is missing.
        missing = [
            f"tls.{key}: {path}"
            for key, path in (("cert_file", settings.cert_file), ("key_file", settings.key_file))
            if not Path(path).is_file()
        ]
        raise TlsError(f"{', '.join(missing) or 'tls'} does not exist") from e
    except (ssl.SSLError, OSError) as e:
        raise TlsError(
            f"tls: cannot load the certificate {settings.cert_file} with the key "
            f"{settings.key_file}: {e}"
        ) from e


def _load_ca(ctx: ssl.SSLContext, ca_file: Path) -> None:
    try:
        ctx.load_verify_locations(cafile=str(ca_file))
    except FileNotFoundError as e:
        raise TlsError(f"tls.ca_file: {ca_file} does not exist") from e
    except (ssl.SSLError, OSError) as e:
        raise TlsError(f"tls.ca_file: cannot load {ca_file} as PEM certificates: {e}") from e


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    """A listener context from the files as they are now; raises ``TlsError``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, settings)
    if settings.client_certificates is not ClientCertificates.NONE:
        _load_ca(ctx, settings.ca_file)
        ctx.verify_mode = (
            ssl.CERT_REQUIRED
            if settings.client_certificates is ClientCertificates.REQUIRED
            else ssl.CERT_OPTIONAL
        )
    return ctx


def client_context(
    ca_file: Path | str, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """A context that trusts ``ca_file`` only (and presents a certificate when given one)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_ca(ctx, Path(ca_file))
    if cert_file is not None and key_file is not None:
        _load_chain(ctx, TlsSettings(cert_file, key_file, Path(ca_file)))
    return ctx


def check_files(settings: TlsSettings) -> list[str]:
    """Problems with the files (``raftnode check-config``): each exists and loads."""
    problems: list[str] = []
    for build in (
        lambda: server_context(settings),
        lambda: _load_ca(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), settings.ca_file),
    ):
        try:
            build()
        except TlsError as e:
            problems.append(str(e))
    return problems


class ServerTls:
    """The listeners' TLS contexts, reloadable in place."""

    def __init__(self, settings: TlsSettings) -> None:
        self.settings = settings
        self._current = server_context(settings)
        self._client = self._client_context()
        self.front = server_context(settings)
        """The context the listeners were given; every handshake moves onto ``_current``
        (whose certificate, key and CA store then serve it). OpenSSL keeps the verify mode
        of the context a connection began on, so the front asks for client certificates as
        the current one does."""
        self.front.sni_callback = self._select
        self.reloads = 0

    def _client_context(self) -> ssl.SSLContext:
        s = self.settings
        if s.client_certificates is ClientCertificates.NONE:
            return client_context(s.ca_file)
        return client_context(s.ca_file, s.cert_file, s.key_file)

    def _select(self, sslobj: Any, server_name: str | None, ctx: ssl.SSLContext) -> None:
        sslobj.context = self._current

    @property
    def client(self) -> ssl.SSLContext:
        """For the forwarder: trusts the cluster CA (and presents this node's certificate
        when the listeners ask clients for one)."""
        return self._client

    def reload(self) -> bool:
        """Re-read the certificate, key and CA; on a bad file log it and keep the old ones."""
        try:
            current = server_context(self.settings)
            client = self._client_context()
        except TlsError as e:
            log.error(
                "TLS files refused; the certificate in force stays",
                extra={"fields": {"problem": str(e)}},
            )
            return False
        self._current, self._client = current, client
        self.reloads += 1
        log.info(
            "TLS certificate and CA reloaded",
            extra={"fields": {"cert": str(self.settings.cert_file)}},
        )
        return True


def certificate_names(peercert: Any) -> tuple[str, ...]:
    """The subject common names and DNS/URI alternative names of a verified client
    certificate (``getpeercert()``'s dict form); () for none."""
    if not peercert or not isinstance(peercert, dict):
        return ()
    names: list[str] = []
    for rdn in peercert.get("subject", ()):
        names.extend(value for key, value in rdn if key == "commonName")
    names.extend(
        value for kind, value in peercert.get("subjectAltName", ()) if kind in ("DNS", "URI")
    )
    return tuple(names)
