"""Binary encoding of write-ahead log frames and the records inside them.

A segment file is a sequence of frames, one per ``persist`` batch::

    frame  := length:u32  crc32(payload):u32  payload[length]
    payload := record+
    record := kind:u8 ...   (ENTRY: term:u64 index:u64 type:u8 data_len:u32 data)
                            (RESET: term:u64 index:u64 0:u8 0:u32, alone in its frame)

A RESET frame records that the log was replaced by a snapshot received from the leader at
``index``/``term``: entries after ``index`` written before it are void (see ``LogReset``).

All integers are little-endian. A batch is one frame on purpose: it is written with a single
``write`` and made durable by a single fsync, so after a crash the only frame that can be damaged
is the last one. A damaged frame followed by valid frames therefore means the disk corrupted data
that had already been fsynced, not that a write was torn.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from raftnode.raft.types import Entry, EntryType

RECORD_FRAME_HEADER = struct.Struct("<II")
"""Before every record on disk (WAL, hard state): payload length, CRC32 of the payload."""
ENTRY_HEADER = struct.Struct("<BQQBI")
KIND_ENTRY = 1
KIND_RESET = 2


@dataclass(frozen=True, slots=True)
class LogReset:
    """The log was replaced by a snapshot at ``index``: earlier-written entries after it are void.

    The consensus core discards its whole log when it installs a leader's snapshot that its log
    does not match; this record makes recovery do the same, so stale entries can never come back
    after a restart and follow a snapshot they do not belong to.
    """

    index: int
    term: int


class RecordError(ValueError):
    """A frame passed its CRC but its records do not decode (an encoder bug or version skew)."""


def encode_frame(entries: Sequence[Entry]) -> bytes:
    """Encode a batch of entries as one checksummed frame."""
    pack = ENTRY_HEADER.pack
    parts: list[bytes] = []
    for e in entries:
        parts.append(pack(KIND_ENTRY, e.term, e.index, e.type, len(e.data)))
        parts.append(e.data)
    payload = b"".join(parts)
    return RECORD_FRAME_HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def encode_reset(index: int, term: int) -> bytes:
    """Encode a ``LogReset`` as a frame of its own."""
    payload = ENTRY_HEADER.pack(KIND_RESET, term, index, 0, 0)
    return RECORD_FRAME_HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def read_frame(buf: bytes, offset: int) -> tuple[memoryview, int] | str:
    """Read the frame at ``offset``: ``(payload, next_offset)``, or why it is not a valid frame."""
    end = len(buf)
    if end - offset < RECORD_FRAME_HEADER.size:
        return f"{end - offset} bytes left, a frame header needs {RECORD_FRAME_HEADER.size}"
    length, crc = RECORD_FRAME_HEADER.unpack_from(buf, offset)
    start = offset + RECORD_FRAME_HEADER.size
    if length == 0:
        return "zero-length frame"
    if start + length > end:
        return f"frame of {length} bytes runs past the end of the file"
    payload = memoryview(buf)[start : start + length]
    if zlib.crc32(payload) != crc:
        return "checksum mismatch"
    return payload, start + length


def decode_entries(payload: memoryview) -> list[Entry] | LogReset:
    """Decode the records of a frame whose checksum already matched."""
    entries: list[Entry] = []
    unpack = ENTRY_HEADER.unpack_from
    size = ENTRY_HEADER.size
    pos, end = 0, len(payload)
    while pos < end:
        if end - pos < size:
            raise RecordError(f"truncated record header at payload offset {pos}")
        kind, term, index, etype, data_len = unpack(payload, pos)
        if kind == KIND_RESET:
            if pos != 0 or end != size:
                raise RecordError(f"reset record not alone in its frame at payload offset {pos}")
            if etype != 0 or data_len != 0:
                raise RecordError(f"reset record with entry type {etype} and {data_len} data bytes")
            return LogReset(index, term)
        if kind != KIND_ENTRY:
            raise RecordError(f"unknown record kind {kind} at payload offset {pos}")
        pos += size
        if pos + data_len > end:
            raise RecordError(f"record data runs past the frame at payload offset {pos}")
        try:
            entry_type = EntryType(etype)
        except ValueError:
            raise RecordError(f"unknown entry type {etype} at payload offset {pos}") from None
        entries.append(Entry(term, index, entry_type, bytes(payload[pos : pos + data_len])))
        pos += data_len
    return entries
