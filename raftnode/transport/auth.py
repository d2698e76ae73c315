"""Mutual HMAC-SHA256 challenge/response between peers, run once per connection.

Both sides prove they hold the cluster secret without sending it, each over a fresh nonce of
the other side, so a recorded handshake cannot be replayed::

    dialer   -> listener  MAGIC, dialer_id u64, listener_id u64, nonce_d[32]
    listener -> dialer    listener_id u64, nonce_l[32], HMAC(secret, "listener"|nonce_d|nonce_l|ids)
    dialer   -> listener  HMAC(secret, "dialer"|nonce_l|nonce_d|ids)
    listener -> dialer    OK (1 byte)

Each side also checks the other's node id: the listener only accepts ids of cluster members
(other than itself), the dialer only the id it meant to reach. A connection that fails any
check is closed; the listener logs it. Only authenticated streams carry Raft messages.
"""

from __future__ import annotations

import hmac
import secrets
import struct
from collections.abc import Awaitable, Callable, Collection
from hashlib import sha256

MAGIC = b"RAFTNODE/1"
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
    secret: bytes, label: bytes, nonce_a: bytes, nonce_b: bytes, dialer: int, listener: int
) -> bytes:
    return hmac.new(
        secret, label + nonce_a + nonce_b + _IDS.pack(dialer, listener), sha256
    ).digest()


async def dial_handshake(
    read_exactly: ReadExactly, write: Write, secret: bytes, my_id: int, peer_id: int
) -> None:
    """Run the dialer's side; returns when the listener accepted us, raises ``AuthError``."""
    nonce_d = secrets.token_bytes(NONCE_BYTES)
    await write(MAGIC + _IDS.pack(my_id, peer_id) + nonce_d)
    reply = await read_exactly(_ID.size + NONCE_BYTES + MAC_BYTES)
    (listener_id,) = _ID.unpack_from(reply, 0)
    nonce_l = reply[_ID.size : _ID.size + NONCE_BYTES]
    mac_l = reply[_ID.size + NONCE_BYTES :]
    if listener_id != peer_id:
        raise AuthError(f"dialed node {peer_id} but node {listener_id} answered")
    expected = _mac(secret, b"listener", nonce_d, nonce_l, my_id, peer_id)
    if not hmac.compare_digest(mac_l, expected):
        raise AuthError(f"node {peer_id} failed authentication (wrong cluster secret?)")
    await write(_mac(secret, b"dialer", nonce_l, nonce_d, my_id, peer_id))
    if await read_exactly(len(OK)) != OK:
        raise AuthError(f"node {peer_id} refused the handshake")


async def accept_handshake(
    read_exactly: ReadExactly,
    write: Write,
    secret: bytes,
    my_id: int,
    members: Collection[int],
) -> int:
    """Run the listener's side; returns the authenticated dialer's node id or raises."""
    hello = await read_exactly(len(MAGIC) + _IDS.size + NONCE_BYTES)
    if hello[: len(MAGIC)] != MAGIC:
        raise AuthError("not a raftnode peer (bad magic)")
    dialer_id, listener_id = _IDS.unpack_from(hello, len(MAGIC))
    nonce_d = hello[len(MAGIC) + _IDS.size :]
    if listener_id != my_id:
        raise AuthError(f"dialer wanted node {listener_id}, this is node {my_id}")
    if dialer_id == my_id or dialer_id not in members:
        raise AuthError(f"node id {dialer_id} is not a member of this cluster")
    nonce_l = secrets.token_bytes(NONCE_BYTES)
    await write(
        _ID.pack(my_id) + nonce_l + _mac(secret, b"listener", nonce_d, nonce_l, dialer_id, my_id)
    )
    mac_d = await read_exactly(MAC_BYTES)
    expected = _mac(secret, b"dialer", nonce_l, nonce_d, dialer_id, my_id)
    if not hmac.compare_digest(mac_d, expected):
        raise AuthError(f"node {dialer_id} failed authentication (wrong cluster secret?)")
    await write(OK)
    return dialer_id
