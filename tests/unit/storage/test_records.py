"""Frame encoding: round trip, and every kind of damage is reported rather than decoded."""

from __future__ import annotations

import struct
import zlib

import pytest

from raftnode.raft.types import Entry, EntryType
from raftnode.storage.records import (
    RECORD_FRAME_HEADER,
    RecordError,
    decode_entries,
    encode_frame,
    read_frame,
)

ENTRIES = [
    Entry(1, 1),
    Entry(1, 2, EntryType.CONF_CHANGE, b'{"op":0}'),
    Entry(7, 3, EntryType.NORMAL, bytes(range(256)) * 3),
]


def test_frame_round_trips_entries_of_every_type() -> None:
    frame = encode_frame(ENTRIES)
    result = read_frame(frame + b"trailing", 0)
    assert not isinstance(result, str)
    payload, next_offset = result
    assert next_offset == len(frame)
    assert decode_entries(payload) == ENTRIES


@pytest.mark.parametrize("position", range(0, 40))
def test_any_flipped_bit_is_detected(position: int) -> None:
    frame = bytearray(encode_frame(ENTRIES))
    frame[position] ^= 0x10
    assert isinstance(read_frame(bytes(frame), 0), str)


def test_short_zero_and_overlong_frames_are_rejected() -> None:
    frame = encode_frame(ENTRIES)
    assert "header" in read_frame(frame[:5], 0)
    assert read_frame(b"\0" * 64, 0) == "zero-length frame"
    assert "past the end" in read_frame(frame[:-1], 0)


def test_crc_valid_payload_with_unknown_record_kind_is_an_error() -> None:
    payload = struct.pack("<BQQBI", 9, 1, 1, 0, 0)
    frame = RECORD_FRAME_HEADER.pack(len(payload), zlib.crc32(payload)) + payload
    result = read_frame(frame, 0)
    assert not isinstance(result, str)
    with pytest.raises(RecordError, match="unknown record kind 9"):
        decode_entries(result[0])
