"""The cluster id a data directory belongs to: 16 bytes derived when a cluster is bootstrapped
(from the initial members and ``initial_cluster_token``, so every initial member derives the same
one without talking, as etcd does) or restored from a snapshot (from the snapshot's checksum too,
so never the old cluster's); learned by a joining node from its first authenticated peer; and
checked at every peer handshake (``raftnode.transport.auth``)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from raftnode.transport.auth import CLUSTER_ID_BYTES, NO_CLUSTER

FILE = "cluster_id"


def derive_cluster_id(*parts: str) -> bytes:
    """The first 16 bytes of SHA-256 over ``parts``: the same inputs, the same id."""
    return hashlib.sha256("|".join(("raftnode cluster", *parts)).encode()).digest()[
        :CLUSTER_ID_BYTES
    ]


def bootstrap_cluster_id(members: Mapping[int, object], token: str) -> bytes:
    """The id of a cluster bootstrapped with ``members`` (id -> peer address) and ``token``."""
    listed = ",".join(f"{k}={v}" for k, v in sorted(members.items()))
    return derive_cluster_id("bootstrap", listed, token)


def read_cluster_id(data_dir: Path) -> bytes:
    """The stored id, or ``NO_CLUSTER`` when none was stored; ``ValueError`` names a bad file."""
    path = data_dir / FILE
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return NO_CLUSTER
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != CLUSTER_ID_BYTES:
        raise ValueError(f"{path}: not a cluster id ({CLUSTER_ID_BYTES * 2} hex digits)")
    return value


def write_cluster_id(data_dir: Path, cluster_id: bytes) -> None:
    """Store ``cluster_id`` atomically and durably (temporary file, fsync, rename, fsync dir)."""
    path = data_dir / FILE
    tmp = path.with_name(FILE + ".tmp")
    with tmp.open("w") as f:
        f.write(cluster_id.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
