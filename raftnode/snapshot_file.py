"""Snapshot files for operators: back up a running cluster, inspect a file, restore a new one.

A snapshot file is the key-value store's own snapshot (an SQLite file, ``raftnode.kv.store``)
sealed with the Raft position it reflects: one ``raft_position`` row with the index, term and
configuration (voters, learners, peer addresses). ``raftnode snapshot save`` downloads one from
a node (``GET /admin/v1/snapshot``), ``inspect`` reads it, and ``restore`` turns it into a fresh
data directory for a *new* cluster (etcdutl's ``snapshot restore``): the store as in the file,
and a Raft log that starts at the file's index with the membership given on the command line,
under a new cluster id (the old members are refused at the peer handshake).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftnode.config import Address
from raftnode.kv.store import KeyValueStore, StoreFormatError, inspect_snapshot
from raftnode.raft.types import ConfState, HardState, Snapshot, SnapshotMeta
from raftnode.storage.cluster_identity import derive_cluster_id, write_cluster_id
from raftnode.storage.raft_storage import RaftStorage

STORE_FILE = "kv.sqlite"
"""The key-value store inside a data directory (beside the Raft log)."""

_POSITION_TABLE = (
    "CREATE TABLE IF NOT EXISTS raft_position (id INTEGER PRIMARY KEY CHECK (id = 0),"
    " idx INTEGER NOT NULL, term INTEGER NOT NULL, voters TEXT NOT NULL,"
    " learners TEXT NOT NULL, peers TEXT NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class SnapshotDescription:
    """What ``raftnode snapshot inspect`` shows."""

    index: int
    term: int
    voters: list[int]
    learners: list[int]
    peers: dict[str, str]
    revision: int
    keys: int
    size_bytes: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "term": self.term,
            "voters": self.voters,
            "learners": self.learners,
            "peers": self.peers,
            "revision": self.revision,
            "keys": self.keys,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
        }


def seal_and_map(
    path: Path, meta: SnapshotMeta, peers: dict[int, Address]
) -> tuple[mmap.mmap, str]:
    """Write the Raft position into a fresh store snapshot at ``path``, then return the file
    memory-mapped (and unlinked: the map holds the data) with its SHA-256 (worker thread)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(_POSITION_TABLE)
        conn.execute(
            "INSERT OR REPLACE INTO raft_position (id, idx, term, voters, learners, peers)"
            " VALUES (0, ?, ?, ?, ?, ?)",
            (
                meta.index,
                meta.term,
                json.dumps(sorted(meta.conf.voters)),
                json.dumps(sorted(meta.conf.learners)),
                json.dumps({str(k): str(v) for k, v in sorted(peers.items())}),
            ),
        )
    finally:
        conn.close()
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    path.unlink()
    return data, digest.hexdigest()


def describe(path: Path) -> SnapshotDescription:
    """Read a snapshot file; raises ``StoreFormatError`` naming the file when it is not one."""
    info = inspect_snapshot(path, verify=True)
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = conn.execute(
                "SELECT idx, term, voters, learners, peers FROM raft_position WHERE id = 0"
            ).fetchone()
        finally:
            conn.close()
    except (sqlite3.Error, UnicodeDecodeError) as e:
        raise StoreFormatError(
            f"{path}: no Raft position in this file ({e}); "
            "take snapshots with `raftnode snapshot save`"
        ) from e
    if row is None:
        raise StoreFormatError(f"{path}: no Raft position in this file")
    index, term, voters, learners, peers = row
    if index != info.applied_index:
        raise StoreFormatError(
            f"{path}: the Raft position ({index}) does not match the data ({info.applied_index})"
        )
    if not isinstance(term, int) or term < 0:
        raise StoreFormatError(f"{path}: damaged Raft position: term {term!r}")
    return SnapshotDescription(
        index=index,
        term=term,
        voters=_ids(path, "voters", voters),
        learners=_ids(path, "learners", learners),
        peers=_peers(path, peers),
        revision=info.revision,
        keys=info.key_count,
        size_bytes=info.size_bytes,
        sha256=info.sha256,
    )


def _position_json(path: Path, column: str, text: Any) -> Any:
    """One JSON column of the ``raft_position`` row; ``StoreFormatError`` when it is damaged."""
    if not isinstance(text, str):
        raise StoreFormatError(f"{path}: damaged Raft position: {column} is not text")
    try:
        return json.loads(text)
    except ValueError as e:
        raise StoreFormatError(f"{path}: damaged Raft position: {column} ({e})") from e


def _ids(path: Path, column: str, text: Any) -> list[int]:
    """A sorted list of unique positive member ids, as ``seal_and_map`` writes it."""
    ids = _position_json(path, column, text)
    if (
        not isinstance(ids, list)
        or not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in ids)
        or ids != sorted(set(ids))
    ):
        raise StoreFormatError(f"{path}: damaged Raft position: {column} is not a list of ids")
    return ids


def _peers(path: Path, text: Any) -> dict[str, str]:
    """Member id (as text) -> peer address, as ``seal_and_map`` writes it."""
    peers = _position_json(path, "peers", text)
    if not isinstance(peers, dict) or not all(
        k.isdigit() and isinstance(v, str) for k, v in peers.items()
    ):
        raise StoreFormatError(f"{path}: damaged Raft position: peers is not id -> address")
    return peers


def restored_cluster_id(desc: SnapshotDescription, voters: dict[int, Address], token: str) -> bytes:
    """The new cluster's id: the same on every member restored from the same file with the
    same members and token (etcd's --initial-cluster-token), never the old cluster's."""
    members = ",".join(f"{k}={v}" for k, v in sorted(voters.items()))
    return derive_cluster_id("restore", desc.sha256, members, token)


def restore_data_dir(
    path: Path, data_dir: Path, voters: dict[int, Address], token: str = ""
) -> SnapshotDescription:
    """A fresh data directory for one member of a new cluster restored from ``path``.

    Every member of the new cluster is restored from the same file with the same ``voters``:
    their logs then agree (a snapshot marker at the file's index and term, the new membership)
    and they elect a leader among themselves. Refuses a data directory that is not empty.
    """
    desc = describe(path)
    if data_dir.exists() and any(data_dir.iterdir()):
        raise FileExistsError(f"{data_dir} is not empty: restore into a new directory")
    if not voters:
        raise ValueError("the restored cluster needs at least one member")
    data_dir.mkdir(parents=True, exist_ok=True)
    store = KeyValueStore.open(data_dir / STORE_FILE)
    try:
        store.restore_from(path)
    finally:
        store.close()
    meta = SnapshotMeta(desc.index, desc.term, ConfState(voters=frozenset(voters)))
    storage = RaftStorage.open(data_dir)
    try:
        storage.install_snapshot(Snapshot(meta, b"", complete=False))
        storage.persist([], HardState(term=desc.term, vote=0, commit=desc.index))
    finally:
        storage.close()
    write_cluster_id(data_dir, restored_cluster_id(desc, voters, token))
    return desc
