"""One write-ahead log segment file: its name, and reading its frames back during recovery."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from raftnode.raft.types import Entry
from raftnode.storage.errors import CorruptLogError
from raftnode.storage.records import (
    RECORD_FRAME_HEADER,
    LogReset,
    RecordError,
    decode_entries,
    read_frame,
)

_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")


def segment_name(seq: int, first_index: int) -> str:
    """``<seq>-<first index expected>.wal`` in fixed-width hex, so names sort in log order."""
    return f"{seq:016x}-{first_index:016x}.wal"


def parse_segment_name(name: str) -> int | None:
    """The sequence number of a segment file name, or None if ``name`` is not a segment."""
    match = _NAME.match(name)
    return int(match.group(1), 16) if match else None


@dataclass(slots=True)
class Segment:
    """What the log keeps in memory about a segment file (never its entries)."""

    seq: int
    path: Path
    size: int
    max_index: int
    """The highest entry index ever written into this segment (0 when it holds none)."""


@dataclass(slots=True)
class SegmentScan:
    """The valid frames at the start of a segment, and where and why reading stopped."""

    frames: list[tuple[int, list[Entry] | LogReset]]
    """(byte offset, entries or a log reset) of each valid frame, in file order."""
    valid_bytes: int
    damage: str | None
    """Why the bytes from ``valid_bytes`` on are not a frame; None when the file ended cleanly."""


def scan_segment(path: Path, data: bytes) -> SegmentScan:
    """Read frames from the start of ``data`` until the end or the first damaged frame."""
    frames: list[tuple[int, list[Entry] | LogReset]] = []
    offset = 0
    while offset < len(data):
        result = read_frame(data, offset)
        if isinstance(result, str):
            return SegmentScan(frames, offset, result)
        payload, next_offset = result
        try:
            entries = decode_entries(payload)
        except RecordError as exc:
            raise CorruptLogError(path, offset, str(exc)) from None
        frames.append((offset, entries))
        offset = next_offset
    return SegmentScan(frames, offset, None)


def find_valid_frame(data: bytes, damaged_at: int) -> int | None:
    """The offset of a valid, decodable frame after ``damaged_at``, or None.

    Used to tell a torn tail (nothing valid after the damage) from corruption of data that was
    already fsynced (valid frames follow it). Tries every byte offset, which is cheap because
    random bytes rarely pass the length check; it only runs when recovery found damage.
    """
    view = memoryview(data)
    unpack = RECORD_FRAME_HEADER.unpack_from
    header = RECORD_FRAME_HEADER.size
    end = len(data)
    for pos in range(damaged_at + 1, end - header):
        length, crc = unpack(data, pos)
        start = pos + header
        if length == 0 or start + length > end:
            continue
        if zlib.crc32(view[start : start + length]) != crc:
            continue
        try:
            decode_entries(view[start : start + length])
        except RecordError:
            continue
        return pos
    return None
