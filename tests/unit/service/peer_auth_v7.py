"""The peer handshake of the release that speaks protocols 2..7, frozen as it shipped
(``raftnode/transport/auth.py`` before protocol 8), so mixed-version handshakes are tested
against the real older code, not against the new module pretending to be old."""

from __future__ import annotations

import asyncio
import hmac
import secrets
import struct
from collections.abc import Awaitable, Callable, Collection
from hashlib import sha256

from tornado.iostream import StreamClosedError

LEGACY_MAGIC = b"RAFTNODE/2"
"""The hello of releases before version negotiation: they speak protocol version 2 only."""
NEGOTIATE_MAGIC = b"RAFTNODE/N"
"""The hello that offers a range of versions (as long as ``LEGACY_MAGIC``)."""
MIN_VERSION = 2
MAX_VERSION = 7
"""Peer protocol versions this release speaks: 2 (the frames of the release before
negotiation), 3 (the same frames, reached through negotiation), 4 (the same frames, from a
node that applies transactions, revision compares and the store's format upgrade: see
``raftnode.kv.commands.TXN_PROTOCOL_VERSION``), 5 (the same frames, from a node that also
applies the upgrade to the history window's format: ``HISTORY_PROTOCOL_VERSION``), 6 (the
same frames, from a node that also applies leases: ``LEASE_PROTOCOL_VERSION``) and 7 (the
same frames, from a node that also applies the history's compaction on command:
``COMPACT_PROTOCOL_VERSION``). What a
peer negotiated tells what it can apply: entries of a newer kind are proposed only once every
member is known to speak their version."""
LEGACY_VERSION = 2
CLUSTER_ID_BYTES = 16
NO_CLUSTER = bytes(CLUSTER_ID_BYTES)
"""The cluster id of a node that has not joined a cluster yet."""
NONCE_BYTES = 32
MAC_BYTES = 32
OK = b"\x01"
REFUSED = 0
_IDS = struct.Struct(">QQ")
_ID = struct.Struct(">Q")
_VERSIONS = struct.Struct(">BBB")
_RANGE = struct.Struct(">BB")
_HELLO_REST = _IDS.size + NONCE_BYTES + CLUSTER_ID_BYTES


class AuthError(Exception):
    """The other side failed the handshake (wrong secret, unknown id, garbage)."""


class VersionMismatch(AuthError):
    """The two sides speak no common peer protocol version."""


class IdentityMismatch(AuthError):
    """The hello names another node than the dialer's TLS certificate does."""


class LegacyListenerSuspected(AuthError):
    """The listener closed the connection without answering a negotiating hello, as releases
    before negotiation do: dial again with ``legacy=True``."""


ReadExactly = Callable[[int], Awaitable[bytes]]
Write = Callable[[bytes], Awaitable[None]]


def choose_version(lo: int, hi: int) -> int:
    """The highest version in both ``lo..hi`` and this release's range, or ``REFUSED`` (0)."""
    best = min(hi, MAX_VERSION)
    return best if best >= max(lo, MIN_VERSION) else REFUSED


def mismatch_message(peer: int | str, lo: int, hi: int) -> str:
    return (
        f"node {peer} speaks peer protocol versions {lo}..{hi}, this node "
        f"{MIN_VERSION}..{MAX_VERSION}: no version in common; upgrade or roll back one of them "
        "(a release speaks its own version and the one before)"
    )


def _mac(
    secret: bytes,
    label: bytes,
    nonce_a: bytes,
    nonce_b: bytes,
    dialer: int,
    listener: int,
    clusters: bytes,
    versions: bytes,
) -> bytes:
    message = label + nonce_a + nonce_b + _IDS.pack(dialer, listener) + clusters + versions
    return hmac.new(secret, message, sha256).digest()


def _check_cluster(mine: bytes, theirs: bytes, peer: int) -> None:
    if mine != NO_CLUSTER and theirs != NO_CLUSTER and mine != theirs:
        raise AuthError(
            f"node {peer} belongs to cluster {theirs.hex()}, this node to cluster {mine.hex()} "
            "(an old member after a restore, or a node of another cluster)"
        )


async def dial_handshake(
    read_exactly: ReadExactly,
    write: Write,
    secret: bytes,
    my_id: int,
    peer_id: int,
    cluster_id: bytes = NO_CLUSTER,
    *,
    legacy: bool = False,
) -> tuple[bytes, int]:
    """Run the dialer's side; returns the listener's cluster id and the version both speak
    once it accepted us, raises ``AuthError`` (``LegacyListenerSuspected``: dial again with
    ``legacy=True``, which speaks version 2 the way releases before negotiation do)."""
    nonce_d = secrets.token_bytes(NONCE_BYTES)
    ids = _IDS.pack(my_id, peer_id)
    if legacy:
        await write(LEGACY_MAGIC + ids + nonce_d + cluster_id)
        version, versions = LEGACY_VERSION, b""
    else:
        await write(
            NEGOTIATE_MAGIC + _RANGE.pack(MIN_VERSION, MAX_VERSION) + ids + nonce_d + cluster_id
        )
        try:
            head = await read_exactly(_VERSIONS.size)
        except (EOFError, ConnectionError, asyncio.IncompleteReadError, StreamClosedError) as e:
            raise LegacyListenerSuspected(
                f"node {peer_id} closed the connection without answering a negotiating hello"
            ) from e
        version, their_lo, their_hi = _VERSIONS.unpack(head)
        if version == REFUSED:
            raise VersionMismatch(mismatch_message(peer_id, their_lo, their_hi))
        if not MIN_VERSION <= version <= MAX_VERSION:
            raise AuthError(f"node {peer_id} chose peer protocol version {version}, not offered")
        versions = _RANGE.pack(MIN_VERSION, MAX_VERSION) + head
    reply = await read_exactly(_ID.size + NONCE_BYTES + CLUSTER_ID_BYTES + MAC_BYTES)
    (listener_id,) = _ID.unpack_from(reply, 0)
    nonce_l = reply[_ID.size : _ID.size + NONCE_BYTES]
    cluster_l = reply[_ID.size + NONCE_BYTES : _ID.size + NONCE_BYTES + CLUSTER_ID_BYTES]
    mac_l = reply[_ID.size + NONCE_BYTES + CLUSTER_ID_BYTES :]
    if listener_id != peer_id:
        raise AuthError(f"dialed node {peer_id} but node {listener_id} answered")
    clusters = cluster_id + cluster_l
    expected = _mac(secret, b"listener", nonce_d, nonce_l, my_id, peer_id, clusters, versions)
    if not hmac.compare_digest(mac_l, expected):
        raise AuthError(f"node {peer_id} failed authentication (wrong cluster secret?)")
    _check_cluster(cluster_id, cluster_l, peer_id)
    await write(_mac(secret, b"dialer", nonce_l, nonce_d, my_id, peer_id, clusters, versions))
    if await read_exactly(len(OK)) != OK:
        raise AuthError(f"node {peer_id} refused the handshake")
    return cluster_l, version


async def accept_handshake(
    read_exactly: ReadExactly,
    write: Write,
    secret: bytes,
    my_id: int,
    members: Collection[int],
    cluster_id: bytes = NO_CLUSTER,
    *,
    dialer_id_must_be: int | None = None,
) -> tuple[int, bytes, int]:
    """Run the listener's side; returns the authenticated dialer's node id and cluster id and
    the version both speak, or raises ``AuthError``. ``dialer_id_must_be``: the id the
    dialer's TLS certificate names (peer TLS), which the hello must repeat."""
    magic = await read_exactly(len(NEGOTIATE_MAGIC))
    if magic == LEGACY_MAGIC:
        lo = hi = LEGACY_VERSION
        offered = b""
    elif magic == NEGOTIATE_MAGIC:
        offered = await read_exactly(_RANGE.size)
        lo, hi = _RANGE.unpack(offered)
    else:
        raise AuthError("not a raftnode peer (bad magic)")
    hello = await read_exactly(_HELLO_REST)
    dialer_id, listener_id = _IDS.unpack_from(hello, 0)
    nonce_d = hello[_IDS.size : _IDS.size + NONCE_BYTES]
    cluster_d = hello[_IDS.size + NONCE_BYTES :]
    if listener_id != my_id:
        raise AuthError(f"dialer wanted node {listener_id}, this is node {my_id}")
    if dialer_id_must_be is not None and dialer_id != dialer_id_must_be:
        raise IdentityMismatch(
            f"the hello says node {dialer_id}, the certificate names node {dialer_id_must_be}"
        )
    if dialer_id == my_id or dialer_id not in members:
        raise AuthError(f"node id {dialer_id} is not a member of this cluster")
    version = choose_version(lo, hi)
    if version == REFUSED:
        if offered:  # a negotiating dialer is told why; a legacy one only sees the close
            await write(_VERSIONS.pack(REFUSED, MIN_VERSION, MAX_VERSION))
        raise VersionMismatch(mismatch_message(dialer_id, lo, hi))
    versions = b""
    if offered:
        head = _VERSIONS.pack(version, MIN_VERSION, MAX_VERSION)
        versions = offered + head
        await write(head)
    nonce_l = secrets.token_bytes(NONCE_BYTES)
    clusters = cluster_d + cluster_id
    mac_l = _mac(secret, b"listener", nonce_d, nonce_l, dialer_id, my_id, clusters, versions)
    await write(_ID.pack(my_id) + nonce_l + cluster_id + mac_l)
    mac_d = await read_exactly(MAC_BYTES)
    expected = _mac(secret, b"dialer", nonce_l, nonce_d, dialer_id, my_id, clusters, versions)
    if not hmac.compare_digest(mac_d, expected):
        raise AuthError(f"node {dialer_id} failed authentication (wrong cluster secret?)")
    _check_cluster(cluster_id, cluster_d, dialer_id)
    await write(OK)
    return dialer_id, cluster_d, version
