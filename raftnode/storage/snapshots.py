"""Snapshot files: ``<dir>/<index>-<term>.snap``, written atomically with a checksum.

Format (little-endian)::

    magic:8s index:u64 term:u64 conf_len:u32 data_len:u32 crc32:u32 conf[conf_len] data[data_len]
    conf := n_voters:u32 n_learners:u32 voter:u64* learner:u64*

The CRC covers the header fields before it, the configuration and the data. A save writes
``<name>.tmp``, fsyncs it, renames it into place and fsyncs the directory; only then are older
snapshots removed (that removal need not be durable: recovery picks the newest valid name).
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

from raftnode.raft.types import ConfState, Snapshot, SnapshotMeta
from raftnode.storage.errors import CorruptSnapshotError
from raftnode.storage.files import FileSystem

_MAGIC = b"RNSNAP01"
_HEADER = struct.Struct("<8sQQII")
_CRC = struct.Struct("<I")
_COUNTS = struct.Struct("<II")
_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.snap$")


def snapshot_name(meta: SnapshotMeta) -> str:
    return f"{meta.index:016x}-{meta.term:016x}.snap"


def _encode_conf(conf: ConfState) -> bytes:
    voters, learners = sorted(conf.voters), sorted(conf.learners)
    ids = voters + learners
    return _COUNTS.pack(len(voters), len(learners)) + struct.pack(f"<{len(ids)}Q", *ids)


def _decode_conf(path: Path, raw: bytes) -> ConfState:
    if len(raw) < _COUNTS.size:
        raise CorruptSnapshotError(path, "configuration is truncated")
    n_voters, n_learners = _COUNTS.unpack_from(raw)
    if len(raw) != _COUNTS.size + 8 * (n_voters + n_learners):
        raise CorruptSnapshotError(path, "configuration length does not match its member count")
    ids = struct.unpack_from(f"<{n_voters + n_learners}Q", raw, _COUNTS.size)
    return ConfState(frozenset(ids[:n_voters]), frozenset(ids[n_voters:]))


def decode_snapshot(path: Path, blob: bytes) -> Snapshot:
    """Parse and verify a snapshot file's bytes; raise CorruptSnapshotError naming ``path``."""
    fixed = _HEADER.size + _CRC.size
    if len(blob) < fixed:
        raise CorruptSnapshotError(path, f"{len(blob)} bytes is shorter than the header")
    magic, index, term, conf_len, data_len = _HEADER.unpack_from(blob)
    if magic != _MAGIC:
        raise CorruptSnapshotError(path, f"unknown format {magic!r}")
    if len(blob) != fixed + conf_len + data_len:
        raise CorruptSnapshotError(
            path, f"{len(blob)} bytes, the header announces {fixed + conf_len + data_len}"
        )
    (crc,) = _CRC.unpack_from(blob, _HEADER.size)
    view = memoryview(blob)
    if zlib.crc32(view[fixed:], zlib.crc32(view[: _HEADER.size])) != crc:
        raise CorruptSnapshotError(path, "checksum mismatch")
    conf = _decode_conf(path, bytes(view[fixed : fixed + conf_len]))
    return Snapshot(SnapshotMeta(index, term, conf), bytes(view[fixed + conf_len :]))


class SnapshotFiles:
    """Saves snapshots and loads the newest one."""

    def __init__(self, fs: FileSystem, directory: Path) -> None:
        self._fs = fs
        self._dir = directory

    def load_latest(self) -> Snapshot | None:
        """The newest snapshot, or None; leftover ``.tmp`` files from a crash are removed."""
        found: list[tuple[int, int, str]] = []
        for name in self._fs.listdir(self._dir):
            if name.endswith(".snap.tmp"):
                self._fs.unlink(self._dir / name)
            elif match := _NAME.match(name):
                found.append((int(match.group(1), 16), int(match.group(2), 16), name))
        if not found:
            return None
        index, term, name = max(found)
        path = self._dir / name
        snapshot = decode_snapshot(path, self._fs.read(path))
        if (snapshot.meta.index, snapshot.meta.term) != (index, term):
            raise CorruptSnapshotError(
                path,
                f"header says index {snapshot.meta.index} term {snapshot.meta.term}, "
                "which does not match the file name",
            )
        return snapshot

    def save(self, snapshot: Snapshot) -> Path:
        """Write ``snapshot`` atomically and durably, then remove older snapshot files."""
        meta = snapshot.meta
        conf = _encode_conf(meta.conf)
        header = _HEADER.pack(_MAGIC, meta.index, meta.term, len(conf), len(snapshot.data))
        crc = zlib.crc32(snapshot.data, zlib.crc32(conf, zlib.crc32(header)))
        name = snapshot_name(meta)
        path = self._dir / name
        tmp = self._dir / (name + ".tmp")
        f = self._fs.open(tmp, truncate=True)
        try:
            self._fs.write(f, header + _CRC.pack(crc) + conf)
            self._fs.write(f, bytes(snapshot.data))
            self._fs.fsync(f)
        finally:
            self._fs.close(f)
        self._fs.rename(tmp, path)
        self._fs.fsync_dir(self._dir)
        for other in self._fs.listdir(self._dir):
            if other != name and _NAME.match(other):
                self._fs.unlink(self._dir / other)
        return path
