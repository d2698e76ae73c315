"""Mutual HMAC-SHA256 challenge/response between peers, and the peer protocol version, run once
per connection.

Both sides prove they hold the cluster secret without sending it, each over a fresh nonce of
the other side, so a recorded handshake cannot be replayed::

    dialer   -> listener  "RAFTNODE/N", lo u8, hi u8, dialer_id u64, listener_id u64,
                          nonce_d[32], cluster_d[16]
    listener -> dialer    version u8, its lo u8, its hi u8, listener_id u64, nonce_l[32],
                          cluster_l[16], HMAC(secret, "listener"|nonce_d|nonce_l|ids|clusters|vers)
    dialer   -> listener  HMAC(secret, "dialer"|nonce_l|nonce_d|ids|clusters|vers)
    listener -> dialer    OK (1 byte)

**Version 8: the dialer proves itself first.** Up to version 7 the listener answers a hello
with its MAC before the dialer proved anything, which hands anyone who can reach the peer port
material for guessing the secret offline. From version 8 on the listener sends nothing derived
from the secret until the dialer's proof verified, and every frame after the handshake carries
a MAC under a key of this connection (``raftnode.transport.frame_mac``)::

    dialer   -> listener  "RAFTNODE/N", lo, hi, ids, nonce_d[32], cluster_d[16]   (as above)
    listener -> dialer    version u8 (>= 8), lo u8, hi u8, listener_id u64, nonce_l[32],
                          cluster_l[16]                                    (no MAC)
    dialer   -> listener  HMAC(secret, "raftnode/8 dialer"|nonce_d|nonce_l|ids|clusters|vers)
    listener -> dialer    HMAC(secret, "raftnode/8 listener"|nonce_d|nonce_l|ids|clusters|vers)
                          (only once the dialer's proof verified; else it closes)

Both sides then derive one session key per direction, HKDF (RFC 5869) with HMAC-SHA256: the
secret extracted with both nonces as the salt, expanded with the direction, the ids, the
cluster ids and the versions (``session_keys``). The dialer still proves itself over a nonce
the listener chose, so a recorded proof is useless on another connection. What is left: a
dialer answers whoever answers its hello with a proof, so someone who can impersonate a peer's
address (not merely reach a port) can still collect material for offline guessing; the secret
must be long and random (``secret_file``: 32 random bytes), and ``peer_tls`` has neither gap.

``min_version`` (``peer_min_protocol`` in the config) refuses older versions both ways: a
listener closes a legacy hello unanswered and answers an offer that does not reach it with
version 0 (nothing derived from the secret); a dialer offers only ``min_version..MAX_VERSION``
and never falls back to the legacy hello. Until an operator raises it to 8 (once every member
runs this release), anyone who reaches the peer port can still dial with an older hello and get
the listener's MAC, and frames to and from older peers carry no MAC: the price of the rolling
upgrade. Between two nodes of this release a downgrade on the path fails the handshake: the
offer and the choice are inside both proofs.

**Versions.** The dialer offers the range of peer protocol versions it speaks (``lo..hi``); the
listener picks the highest both speak, or answers version 0 with its own range and closes, and
both sides log which ranges did not meet. The offered range and the choice are inside both MACs,
so nobody without the secret can change them. Releases before negotiation speak only version 2
and open with ``"RAFTNODE/2"`` and no range (``LEGACY_MAGIC``): a listener accepts that as an
offer of 2..2, and a dialer whose negotiating hello was closed unanswered (an old listener
refuses an unknown magic that way) dials again with the legacy hello. That is what lets a
cluster upgrade one node at a time: every release speaks its own version and the one before
(the N-1 promise, docs/operators-guide.md). Once a version must never be downgraded, ``MIN_VERSION``
rises past 2 and the legacy path ends.

Each side also checks the other's node id: the listener only accepts ids of cluster members
(other than itself), the dialer only the id it meant to reach; and the cluster id: a node of
another cluster (the old members after a restore, say, which share the secret and the node ids)
is refused with both ids named. A node that does not know its cluster yet (all zeros: it was
started to join) learns it from the first authenticated peer. A connection that fails any
check is closed; the listener logs it. Only authenticated streams carry Raft messages.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import struct
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from hashlib import sha256

from tornado.iostream import StreamClosedError

LEGACY_MAGIC = b"RAFTNODE/2"
"""The hello of releases before version negotiation: they speak protocol version 2 only."""
NEGOTIATE_MAGIC = b"RAFTNODE/N"
"""The hello that offers a range of versions (as long as ``LEGACY_MAGIC``)."""
MIN_VERSION = 2
MAX_VERSION = 8
"""Peer protocol versions this release speaks: 2 (the frames of the release before
negotiation), 3 (the same frames, reached through negotiation), 4 (the same frames, from a
node that applies transactions, revision compares and the store's format upgrade: see
``raftnode.kv.commands.TXN_PROTOCOL_VERSION``), 5 (the same frames, from a node that also
applies the upgrade to the history window's format: ``HISTORY_PROTOCOL_VERSION``), 6 (the
same frames, from a node that also applies leases: ``LEASE_PROTOCOL_VERSION``), 7 (the
same frames, from a node that also applies the history's compaction on command:
``COMPACT_PROTOCOL_VERSION``) and 8 (the dialer proves itself first and every frame carries
a MAC: ``MAC_VERSION``). What a peer negotiated tells what it can apply: entries of a newer
kind are proposed only once every member is known to speak their version."""
MAC_VERSION = 8
"""The first version whose dialer proves itself first and whose frames carry a MAC."""
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
_REPLY = _ID.size + NONCE_BYTES + CLUSTER_ID_BYTES
"""The listener's id, nonce and cluster id, before its MAC (up to 7) or alone (8 on)."""
_DIALER_PROOF = b"raftnode/8 dialer"
_LISTENER_PROOF = b"raftnode/8 listener"
_KEY_DIALER_TO_LISTENER = b"raftnode/8 frames dialer->listener"
_KEY_LISTENER_TO_DIALER = b"raftnode/8 frames listener->dialer"


class AuthError(Exception):
    """The other side failed the handshake (wrong secret, unknown id, garbage)."""


class ProofFailed(AuthError):
    """The other side's MAC over the handshake does not verify: it does not hold the secret
    (or someone on the path changed the handshake)."""


class VersionMismatch(AuthError):
    """The two sides speak no common peer protocol version."""


class IdentityMismatch(AuthError):
    """The hello names another node than the dialer's TLS certificate does."""


class LegacyListenerSuspected(AuthError):
    """The listener closed the connection without answering a negotiating hello, as releases
    before negotiation do: dial again with ``legacy=True``."""


@dataclass(frozen=True, slots=True)
class Handshake:
    """What an accepted handshake established."""

    peer_id: int
    cluster_id: bytes
    """The other side's cluster id (``NO_CLUSTER``: it has not joined one)."""
    version: int
    send_key: bytes | None = None
    """From ``MAC_VERSION`` on: the key of the frames this side sends; None below."""
    receive_key: bytes | None = None
    """From ``MAC_VERSION`` on: the key of the frames this side receives; None below."""


ReadExactly = Callable[[int], Awaitable[bytes]]
Write = Callable[[bytes], Awaitable[None]]


def choose_version(lo: int, hi: int, min_version: int = MIN_VERSION) -> int:
    """The highest version in both ``lo..hi`` and ``min_version..MAX_VERSION``, or
    ``REFUSED`` (0)."""
    best = min(hi, MAX_VERSION)
    return best if best >= max(lo, min_version, MIN_VERSION) else REFUSED


def mismatch_message(peer: int | str, lo: int, hi: int, min_version: int = MIN_VERSION) -> str:
    mine = max(min_version, MIN_VERSION)
    why = (
        f" (peer_min_protocol: {min_version} refuses the older ones: upgrade that node)"
        if mine > MIN_VERSION
        else ""
    )
    return (
        f"node {peer} speaks peer protocol versions {lo}..{hi}, this node "
        f"{mine}..{MAX_VERSION}: no version in common{why}; upgrade or roll back one of them "
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


def session_keys(
    secret: bytes,
    nonce_d: bytes,
    nonce_l: bytes,
    dialer: int,
    listener: int,
    clusters: bytes,
    versions: bytes,
) -> tuple[bytes, bytes]:
    """The connection's frame keys ``(dialer->listener, listener->dialer)``: HKDF-SHA256
    (RFC 5869) of the secret, salted with both nonces, each expanded with its direction and
    everything the handshake agreed on, so no key serves two connections or two directions."""
    prk = hmac.digest(nonce_d + nonce_l, secret, "sha256")  # HKDF-Extract(salt, IKM)
    context = _IDS.pack(dialer, listener) + clusters + versions
    return (
        hmac.digest(prk, _KEY_DIALER_TO_LISTENER + context + b"\x01", "sha256"),  # Expand, T(1)
        hmac.digest(prk, _KEY_LISTENER_TO_DIALER + context + b"\x01", "sha256"),
    )


def _check_cluster(mine: bytes, theirs: bytes, peer: int) -> None:
    if mine != NO_CLUSTER and theirs != NO_CLUSTER and mine != theirs:
        raise AuthError(
            f"node {peer} belongs to cluster {theirs.hex()}, this node to cluster {mine.hex()} "
            "(an old member after a restore, or a node of another cluster)"
        )


_CLOSED = (EOFError, ConnectionError, asyncio.IncompleteReadError, StreamClosedError)


async def dial_handshake(
    read_exactly: ReadExactly,
    write: Write,
    secret: bytes,
    my_id: int,
    peer_id: int,
    cluster_id: bytes = NO_CLUSTER,
    *,
    legacy: bool = False,
    min_version: int = MIN_VERSION,
) -> Handshake:
    """Run the dialer's side; returns what the listener accepted (its id, cluster id, the
    version both speak, the frame keys from ``MAC_VERSION`` on), raises ``AuthError``
    (``LegacyListenerSuspected``: dial again with ``legacy=True``, which speaks version 2 the
    way releases before negotiation do). ``min_version``: offer nothing older."""
    nonce_d = secrets.token_bytes(NONCE_BYTES)
    ids = _IDS.pack(my_id, peer_id)
    lo = max(min_version, MIN_VERSION)
    if legacy:
        if lo > LEGACY_VERSION:
            raise VersionMismatch(mismatch_message(peer_id, 2, 2, min_version))
        await write(LEGACY_MAGIC + ids + nonce_d + cluster_id)
        version, versions = LEGACY_VERSION, b""
    else:
        await write(NEGOTIATE_MAGIC + _RANGE.pack(lo, MAX_VERSION) + ids + nonce_d + cluster_id)
        try:
            head = await read_exactly(_VERSIONS.size)
        except _CLOSED as e:
            raise LegacyListenerSuspected(
                f"node {peer_id} closed the connection without answering a negotiating hello"
            ) from e
        version, their_lo, their_hi = _VERSIONS.unpack(head)
        if version == REFUSED:
            raise VersionMismatch(mismatch_message(peer_id, their_lo, their_hi, min_version))
        if not lo <= version <= MAX_VERSION:
            raise AuthError(f"node {peer_id} chose peer protocol version {version}, not offered")
        versions = _RANGE.pack(lo, MAX_VERSION) + head
    reply = await read_exactly(_REPLY)
    (listener_id,) = _ID.unpack_from(reply, 0)
    nonce_l = reply[_ID.size : _ID.size + NONCE_BYTES]
    cluster_l = reply[_ID.size + NONCE_BYTES :]
    if listener_id != peer_id:
        raise AuthError(f"dialed node {peer_id} but node {listener_id} answered")
    clusters = cluster_id + cluster_l
    if version >= MAC_VERSION:
        proof = (nonce_d, nonce_l, my_id, peer_id, clusters, versions)
        await write(_mac(secret, _DIALER_PROOF, *proof))
        try:
            mac_l = await read_exactly(MAC_BYTES)
        except _CLOSED as e:
            raise ProofFailed(
                f"node {peer_id} refused this node's proof (wrong cluster secret?)"
            ) from e
        if not hmac.compare_digest(mac_l, _mac(secret, _LISTENER_PROOF, *proof)):
            raise ProofFailed(f"node {peer_id} failed authentication (wrong cluster secret?)")
        _check_cluster(cluster_id, cluster_l, peer_id)
        send, receive = session_keys(secret, *proof)
        return Handshake(peer_id, cluster_l, version, send, receive)
    mac_l = await read_exactly(MAC_BYTES)
    expected = _mac(secret, b"listener", nonce_d, nonce_l, my_id, peer_id, clusters, versions)
    if not hmac.compare_digest(mac_l, expected):
        raise ProofFailed(f"node {peer_id} failed authentication (wrong cluster secret?)")
    _check_cluster(cluster_id, cluster_l, peer_id)
    await write(_mac(secret, b"dialer", nonce_l, nonce_d, my_id, peer_id, clusters, versions))
    if await read_exactly(len(OK)) != OK:
        raise AuthError(f"node {peer_id} refused the handshake")
    return Handshake(peer_id, cluster_l, version)


async def accept_handshake(
    read_exactly: ReadExactly,
    write: Write,
    secret: bytes,
    my_id: int,
    members: Collection[int],
    cluster_id: bytes = NO_CLUSTER,
    *,
    dialer_id_must_be: int | None = None,
    min_version: int = MIN_VERSION,
) -> Handshake:
    """Run the listener's side; returns the authenticated dialer's node id and cluster id,
    the version both speak and the frame keys from ``MAC_VERSION`` on, or raises
    ``AuthError``. ``dialer_id_must_be``: the id the dialer's TLS certificate names (peer
    TLS), which the hello must repeat. ``min_version``: refuse older versions (a legacy
    hello is closed unanswered)."""
    lo_mine = max(min_version, MIN_VERSION)
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
    version = choose_version(lo, hi, min_version)
    if version == REFUSED:
        if offered:  # a negotiating dialer is told why; a legacy one only sees the close
            await write(_VERSIONS.pack(REFUSED, lo_mine, MAX_VERSION))
        raise VersionMismatch(mismatch_message(dialer_id, lo, hi, min_version))
    head = _VERSIONS.pack(version, lo_mine, MAX_VERSION) if offered else b""
    versions = offered + head
    nonce_l = secrets.token_bytes(NONCE_BYTES)
    clusters = cluster_d + cluster_id
    if version >= MAC_VERSION:
        # Nothing derived from the secret leaves before the dialer's proof verified.
        await write(head + _ID.pack(my_id) + nonce_l + cluster_id)
        proof = (nonce_d, nonce_l, dialer_id, my_id, clusters, versions)
        mac_d = await read_exactly(MAC_BYTES)
        if not hmac.compare_digest(mac_d, _mac(secret, _DIALER_PROOF, *proof)):
            raise ProofFailed(f"node {dialer_id} failed authentication (wrong cluster secret?)")
        await write(_mac(secret, _LISTENER_PROOF, *proof))
        _check_cluster(cluster_id, cluster_d, dialer_id)
        receive, send = session_keys(secret, *proof)
        return Handshake(dialer_id, cluster_d, version, send, receive)
    mac_l = _mac(secret, b"listener", nonce_d, nonce_l, dialer_id, my_id, clusters, versions)
    await write(head + _ID.pack(my_id) + nonce_l + cluster_id + mac_l)
    mac_d = await read_exactly(MAC_BYTES)
    expected = _mac(secret, b"dialer", nonce_l, nonce_d, dialer_id, my_id, clusters, versions)
    if not hmac.compare_digest(mac_d, expected):
        raise ProofFailed(f"node {dialer_id} failed authentication (wrong cluster secret?)")
    _check_cluster(cluster_id, cluster_d, dialer_id)
    await write(OK)
    return Handshake(dialer_id, cluster_d, version)
