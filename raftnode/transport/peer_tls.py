"""Mutual TLS 1.3 between peers (``peer_tls:`` in the node config).

Every node's certificate names its node id in a URI subject alternative name,
``raftnode://<cluster>/node/<id>``, where ``<cluster>`` is the cluster id in hex (32 digits) or
``*`` (a certificate issued before the cluster id exists: it is made at bootstrap, after the
certificates). The certificate also names the node's peer address (an IP or DNS SAN), which the
dialer checks as any TLS client does (etcd's rule).

Both sides require a certificate that chains to ``ca_file``. On top of the chain:

* the dialer checks that the listener's URI SAN names the node id it meant to dial;
* the listener reads the dialer's node id from its URI SAN and accepts it only when that id is a
  current member (voter or learner) of this node's configuration; the versioned hello that runs
  inside TLS must then name the same id;
* a URI SAN with a cluster id (not ``*``) must match this node's cluster id once known; the
  hello's cluster check ("belongs to cluster ...") stays on top either way.

Every refusal has one reason from ``Refusal`` (logged on one line by the listener, or by the
dialer's "peer connect failed"). SIGHUP re-reads the certificate, key and CA (``PeerTls.reload``):
new connections use them, open ones keep theirs; a bad file keeps the old ones.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

URI_SCHEME = "raftnode"
ANY_CLUSTER = "*"
_URI = re.compile(r"raftnode://(\*|[0-9a-f]{32})/node/([1-9][0-9]{0,18})")
PEER_TLS_SECRET = b"raftnode peer TLS: authenticated by certificates"
"""The hello's MAC key when peer TLS is on and no ``secret_file`` is set: the certificates
authenticate both sides, the hello only negotiates the version and carries the cluster ids."""


@dataclass(frozen=True, slots=True)
class PeerTlsSettings:
    """``peer_tls:`` in the node config."""

    cert_file: Path
    key_file: Path
    ca_file: Path


class PeerTlsError(ValueError):
    """A peer certificate, key or CA file that cannot be used; the message says why."""


class Refusal(StrEnum):
    """Why a peer connection was refused (the ``reason`` field of the log line)."""

    UNKNOWN_CA = "unknown CA"
    EXPIRED = "certificate expired"
    NOT_YET_VALID = "certificate not yet valid"
    NO_CERTIFICATE = "no client certificate"
    WRONG_ADDRESS = "wrong address"
    WRONG_ID = "wrong id"
    NOT_A_MEMBER = "not a member"
    OTHER_CLUSTER = "other cluster"
    NOT_TLS = "not TLS"
    HANDSHAKE = "handshake failed"


class PeerRefused(Exception):
    """A peer failed a TLS identity check; ``reason`` says which."""

    def __init__(self, reason: Refusal, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def peer_uri(node_id: int, cluster: str = ANY_CLUSTER) -> str:
    """The URI SAN a node's certificate carries: ``raftnode://<cluster>/node/<id>``."""
    return f"{URI_SCHEME}://{cluster}/node/{node_id}"


def parse_peer_uri(uri: str) -> tuple[str, int] | None:
    """``(cluster, node_id)`` from a raftnode URI SAN (cluster: hex id or ``*``), else None."""
    m = _URI.fullmatch(uri)
    if m is None:
        return None
    node_id = int(m.group(2))
    return (m.group(1), node_id) if node_id < 1 << 63 else None


def certificate_identity(peercert: Any) -> tuple[str, int]:
    """The one raftnode identity in a verified certificate (``getpeercert()``'s dict form);
    raises ``PeerRefused`` (wrong id) when it names none or several."""
    sans = peercert.get("subjectAltName", ()) if isinstance(peercert, dict) else ()
    uris = [v for kind, v in sans if kind == "URI" and v.startswith(f"{URI_SCHEME}://")]
    found = {p for u in uris if (p := parse_peer_uri(u)) is not None}
    if len(found) != 1:
        named = ", ".join(uris) or "no raftnode:// URI"
        raise PeerRefused(
            Refusal.WRONG_ID,
            f"the certificate must name exactly one raftnode://<cluster>/node/<id>, it has {named}",
        )
    return found.pop()


def check_identity(
    peercert: Any,
    *,
    cluster_id: bytes,
    no_cluster: bytes,
    expected: int | None = None,
    members: Collection[int] = (),
) -> int:
    """The node id a verified peer certificate names, once it passes the checks (``expected``:
    the id the dialer dialed; else the id must be in ``members``); raises ``PeerRefused``."""
    cluster, node_id = certificate_identity(peercert)
    if expected is not None and node_id != expected:
        raise PeerRefused(
            Refusal.WRONG_ID, f"dialed node {expected}, its certificate names node {node_id}"
        )
    if expected is None and node_id not in members:
        raise PeerRefused(
            Refusal.NOT_A_MEMBER,
            f"node {node_id} (named by its certificate) is not a member of this cluster",
        )
    if cluster != ANY_CLUSTER and cluster_id != no_cluster and cluster != cluster_id.hex():
        raise PeerRefused(
            Refusal.OTHER_CLUSTER,
            f"node {node_id} belongs to cluster {cluster} (its certificate), this node to "
            f"cluster {cluster_id.hex()}",
        )
    return node_id


_VERIFY_CODES = {
    9: Refusal.NOT_YET_VALID,
    10: Refusal.EXPIRED,
    2: Refusal.UNKNOWN_CA,
    18: Refusal.UNKNOWN_CA,
    19: Refusal.UNKNOWN_CA,
    20: Refusal.UNKNOWN_CA,
    21: Refusal.UNKNOWN_CA,
    62: Refusal.WRONG_ADDRESS,
    64: Refusal.WRONG_ADDRESS,
}
"""OpenSSL's X509_V_ERR_* codes: not yet valid, expired, issuer unknown / self-signed /
untrusted, host name or IP mismatch."""
_ALERTS = {
    "UNKNOWN_CA": Refusal.UNKNOWN_CA,
    "CERTIFICATE_EXPIRED": Refusal.EXPIRED,
    "CERTIFICATE_REQUIRED": Refusal.NO_CERTIFICATE,
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": Refusal.NO_CERTIFICATE,
    "WRONG_VERSION_NUMBER": Refusal.NOT_TLS,
    "HTTP_REQUEST": Refusal.NOT_TLS,
    "UNSUPPORTED_PROTOCOL": Refusal.NOT_TLS,
}
"""Reasons OpenSSL names when the other side refused us (an alert) or sent no certificate or
no TLS at all."""


def classify(error: BaseException | None) -> tuple[Refusal, str]:
    """The refusal reason and a detail for a failed TLS handshake or identity check."""
    if isinstance(error, PeerRefused):
        return error.reason, error.detail
    if isinstance(error, ssl.SSLCertVerificationError):
        reason = _VERIFY_CODES.get(error.verify_code, Refusal.HANDSHAKE)
        return reason, str(error.verify_message or error)
    if isinstance(error, ssl.SSLError):
        text = str(error.reason or "")
        for key, reason in _ALERTS.items():
            if key in text:
                return reason, str(error)
        return Refusal.HANDSHAKE, str(error)
    return Refusal.HANDSHAKE, str(error) or repr(error)


def _load(ctx: ssl.SSLContext, settings: PeerTlsSettings) -> None:
    for key, path in (
        ("cert_file", settings.cert_file),
        ("key_file", settings.key_file),
        ("ca_file", settings.ca_file),
    ):
        if not path.is_file():
            raise PeerTlsError(f"peer_tls.{key}: {path} does not exist or is not a file")
    try:
        ctx.load_cert_chain(settings.cert_file, settings.key_file)
    except (ssl.SSLError, OSError) as e:
        raise PeerTlsError(
            f"peer_tls: cannot load the certificate {settings.cert_file} with the key "
            f"{settings.key_file}: {e}"
        ) from e
    try:
        ctx.load_verify_locations(cafile=str(settings.ca_file))
    except (ssl.SSLError, OSError) as e:
        raise PeerTlsError(
            f"peer_tls.ca_file: cannot load {settings.ca_file} as PEM certificates: {e}"
        ) from e


def server_context(settings: PeerTlsSettings) -> ssl.SSLContext:
    """The listener's context: TLS 1.3 only, a client certificate from the CA required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load(ctx, settings)
    return ctx


def client_context(settings: PeerTlsSettings) -> ssl.SSLContext:
    """The dialer's context: TLS 1.3 only, the listener's chain and address verified, this
    node's certificate presented."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    _load(ctx, settings)
    return ctx


def _self_handshake(settings: PeerTlsSettings, peer_host: str | None) -> Any:
    """Run a TLS handshake of this node's certificate with itself in memory, each side
    verifying the other against the CA as peers do (the dialer dialing ``peer_host``, when
    given); returns the certificate as the dialer sees it, raises ``PeerTlsError``."""
    server = server_context(settings)
    client = client_context(settings)
    client.check_hostname = peer_host is not None
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    dialer = client.wrap_bio(c_in, c_out, server_side=False, server_hostname=peer_host)
    listener = server.wrap_bio(s_in, s_out, server_side=True)
    done: set[str] = set()
    for _ in range(10):
        for name, obj in (("dialer", dialer), ("listener", listener)):
            try:
                obj.do_handshake()
                done.add(name)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as e:
                reason, detail = classify(e)
                if reason is Refusal.WRONG_ADDRESS:
                    raise PeerTlsError(
                        f"peer_tls.cert_file: {settings.cert_file} does not name {peer_host}, "
                        "this node's peer address in cluster (the address the other nodes "
                        f"dial; add it as an IP or DNS SAN): {detail}"
                    ) from e
                raise PeerTlsError(
                    f"peer_tls: {settings.cert_file} does not verify against "
                    f"{settings.ca_file}: {reason} ({detail})"
                ) from e
            s_in.write(c_out.read())
            c_in.write(s_out.read())
        if len(done) == 2:
            return dialer.getpeercert()
    raise PeerTlsError("peer_tls: a TLS handshake with this node's own certificate never ended")


def check_files(settings: PeerTlsSettings, node_id: int, peer_host: str | None = None) -> list[str]:
    """Problems with the files (``raftnode check-config``): each loads, the certificate chains
    to the CA, is valid now, names this node (``raftnode://<cluster>/node/<node_id>``) and
    ``peer_host`` (the address the other nodes dial), as the dialers will check."""
    try:
        cert = _self_handshake(settings, peer_host)
        _, named = certificate_identity(cert)
    except PeerTlsError as e:
        return [str(e)]
    except PeerRefused as e:
        return [f"peer_tls.cert_file: {settings.cert_file}: {e.detail}"]
    if named != node_id:
        return [
            f"peer_tls.cert_file: {settings.cert_file} names node {named} "
            f"({peer_uri(named)}), this node is {node_id}"
        ]
    return []


class PeerTls:
    """The peer listener's and dialer's contexts, reloadable in place (SIGHUP)."""

    def __init__(self, settings: PeerTlsSettings) -> None:
        self.settings = settings
        self.server = server_context(settings)
        self.client = client_context(settings)
        self.reloads = 0

    def reload(self) -> bool:
        """Re-read the certificate, key and CA for new connections; on a bad file log it and
        keep the ones in force."""
        try:
            server, client = server_context(self.settings), client_context(self.settings)
        except PeerTlsError as e:
            log.error(
                "peer TLS files refused; the certificate in force stays",
                extra={"fields": {"problem": str(e)}},
            )
            return False
        self.server, self.client = server, client
        self.reloads += 1
        log.info(
            "peer TLS certificate and CA reloaded",
            extra={"fields": {"cert": str(self.settings.cert_file)}},
        )
        return True
