"""The hard-state file: term, vote and commit, replaced atomically.

Format: ``magic:8s term:u64 vote:u64 commit:u64 crc32:u32`` (little-endian), the CRC covering
everything before it. A save writes ``hardstate.tmp``, fsyncs it, renames it over ``hardstate``
and fsyncs the directory, so a crash leaves either the old or the new state, never a mix.
"""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

from raftnode.raft.types import HardState
from raftnode.storage.errors import CorruptHardStateError
from raftnode.storage.files import FileSystem

FILE_NAME = "hardstate"
_MAGIC = b"RNHARD01"
_BODY = struct.Struct("<8sQQQ")
_CRC = struct.Struct("<I")


def encode_hard_state(state: HardState) -> bytes:
    body = _BODY.pack(_MAGIC, state.term, state.vote, state.commit)
    return body + _CRC.pack(zlib.crc32(body))


def decode_hard_state(path: Path, data: bytes) -> HardState:
    if len(data) != _BODY.size + _CRC.size:
        raise CorruptHardStateError(path, f"{len(data)} bytes, expected {_BODY.size + _CRC.size}")
    (crc,) = _CRC.unpack_from(data, _BODY.size)
    if zlib.crc32(data[: _BODY.size]) != crc:
        raise CorruptHardStateError(path, "checksum mismatch")
    magic, term, vote, commit = _BODY.unpack_from(data)
    if magic != _MAGIC:
        raise CorruptHardStateError(path, f"unknown format {magic!r}")
    return HardState(term=term, vote=vote, commit=commit)


class HardStateFile:
    """Loads and atomically replaces ``<dir>/hardstate``."""

    def __init__(self, fs: FileSystem, directory: Path) -> None:
        self._fs = fs
        self._dir = directory
        self.path = directory / FILE_NAME

    def load(self) -> HardState | None:
        """The saved hard state, or None when none was ever saved."""
        if FILE_NAME not in self._fs.listdir(self._dir):
            return None
        return decode_hard_state(self.path, self._fs.read(self.path))

    def save(self, state: HardState) -> float:
        """Replace the file atomically and durably; return the seconds spent in fsyncs."""
        tmp = self.path.with_name(FILE_NAME + ".tmp")
        f = self._fs.open(tmp, truncate=True)
        try:
            self._fs.write(f, encode_hard_state(state))
            started = time.perf_counter()
            self._fs.fsync(f)
            elapsed = time.perf_counter() - started
        finally:
            self._fs.close(f)
        self._fs.rename(tmp, self.path)
        started = time.perf_counter()
        self._fs.fsync_dir(self._dir)
        return elapsed + time.perf_counter() - started
