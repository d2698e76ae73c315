"""Mutual HMAC-SHA256 challenge/response between peers, run once per connection.

Both sides prove they hold the cluster secret without sending it, each over a fresh nonce of
the other side, so a recorded handshake cannot be replayed::

    dialer   -> listener  MAGIC, dialer_id u64, listener_id u64, nonce_d[32], cluster_d[16]
    listener -> dialer    listener_id u64, nonce_l[32], cluster_l[16],
                          HMAC(secret, "listener"|nonce_d|nonce_l|ids|cluster_d|cluster_l)
    dialer   -> listener  HMAC(secret, "dialer"|nonce_l|nonce_d|ids|cluster_d|cluster_l)
    listener -> dialer    OK (1 byte)

Each side also checks the other's node id: the listener only accepts ids of cluster members
(other than itself), the dialer only the id it meant to reach; and the cluster id: a node of
another cluster (the old members after a restore, say, which share the secret and the node ids)
is refused with both ids named. A node that does not know its cluster yet (all zeros: it was
started to join) learns it from the first authenticated peer. A connection that fails any
check is closed; the listener logs it. Only authenticated streams carry Raft messages.
"""

from __future__ import annotations

import hmac
import secrets
import struct
from collections.abc import Awaitable, Callable, Collection
from hashlib import sha256

MAGIC = b"RAFTNODE/2"
CLUSTER_ID_BYTES = 16
NO_CLUSTER = bytes(CLUSTER_ID_BYTES)
"""The cluster id of a node that has not joined a cluster yet."""
NONCE_BYTES = 32
MAC_BYTES = 32
OK = b"\x01"
_IDS = struct.Struct(">QQ")
_ID = struct.Struct(">Q")


class AuthError(Exception):
    """The other side failed the handshake (wrong secret, unknown id, garbage)."""


ReadExactly = Callable[[int], Awaitable[bytes]]
Write = Callable[[bytes], Awaitable[None]]


def _mac(
    secret: bytes,
    label: bytes,
    nonce_a: bytes,
    nonce_b: bytes,
    dialer: int,
    listener: int,
    clusters: bytes,
) -> bytes:
    message = label + nonce_a + nonce_b + _IDS.pack(dialer, listener) + clusters
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
) -> bytes:
    """Run the dialer's side; returns the listener's cluster id once it accepted us, raises
    ``AuthError``."""
    nonce_d = secrets.token_bytes(NONCE_BYTES)
    await write(MAGIC + _IDS.pack(my_id, peer_id) + nonce_d + cluster_id)
    reply = await read_exactly(_ID.size + NONCE_BYTES + CLUSTER_ID_BYTES + MAC_BYTES)
    (listener_id,) = _ID.unpack_from(reply, 0)
    nonce_l = reply[_ID.size : _ID.size + NONCE_BYTES]
    cluster_l = reply[_ID.size + NONCE_BYTES : _ID.size + NONCE_BYTES + CLUSTER_ID_BYTES]
    mac_l = reply[_ID.size + NONCE_BYTES + CLUSTER_ID_BYTES :]
    if listener_id != peer_id:
        raise AuthError(f"dialed node {peer_id} but node {listener_id} answered")
    clusters = cluster_id + cluster_l
    expected = _mac(secret, b"listener", nonce_d, nonce_l, my_id, peer_id, clusters)
    if not hmac.compare_digest(mac_l, expected):
        raise AuthError(f"node {peer_id} failed authentication (wrong cluster secret?)")
    _check_cluster(cluster_id, cluster_l, peer_id)
    await write(_mac(secret, b"dialer", nonce_l, nonce_d, my_id, peer_id, clusters))
    if await read_exactly(len(OK)) != OK:
        raise AuthError(f"node {peer_id} refused the handshake")
    return cluster_l


async def accept_handshake(
    read_exactly: ReadExactly,
    write: Write,
    secret: bytes,
    my_id: int,
    members: Collection[int],
    cluster_id: bytes = NO_CLUSTER,
) -> tuple[int, bytes]:
    """Run the listener's side; returns the authenticated dialer's node id and cluster id, or
    raises ``AuthError``."""
    hello = await read_exactly(len(MAGIC) + _IDS.size + NONCE_BYTES + CLUSTER_ID_BYTES)
    if hello[: len(MAGIC)] != MAGIC:
        raise AuthError("not a raftnode peer of this version (bad magic)")
    dialer_id, listener_id = _IDS.unpack_from(hello, len(MAGIC))
    nonce_d = hello[len(MAGIC) + _IDS.size : len(MAGIC) + _IDS.size + NONCE_BYTES]
    cluster_d = hello[len(MAGIC) + _IDS.size + NONCE_BYTES :]
    if listener_id != my_id:
        raise AuthError(f"dialer wanted node {listener_id}, this is node {my_id}")
    if dialer_id == my_id or dialer_id not in members:
        raise AuthError(f"node id {dialer_id} is not a member of this cluster")
    nonce_l = secrets.token_bytes(NONCE_BYTES)
    clusters = cluster_d + cluster_id
    mac_l = _mac(secret, b"listener", nonce_d, nonce_l, dialer_id, my_id, clusters)
    await write(_ID.pack(my_id) + nonce_l + cluster_id + mac_l)
    mac_d = await read_exactly(MAC_BYTES)
    expected = _mac(secret, b"dialer", nonce_l, nonce_d, dialer_id, my_id, clusters)
    if not hmac.compare_digest(mac_d, expected):
        raise AuthError(f"node {dialer_id} failed authentication (wrong cluster secret?)")
    _check_cluster(cluster_id, cluster_d, dialer_id)
    await write(OK)
    return dialer_id, cluster_d
