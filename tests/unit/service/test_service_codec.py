"""Message codec: every field survives a round trip; corrupt frames raise CodecError."""

from __future__ import annotations

import contextlib
import random

import pytest

from raftnode.raft.types import ConfState, Entry, EntryType, Message, MessageType, SnapshotMeta
from raftnode.transport.codec import CodecError, decode_message, encode_message, frame


def sample_messages() -> list[Message]:
    rng = random.Random(7)
    entries = tuple(
        Entry(term=3, index=10 + i, type=EntryType(i % 2), data=rng.randbytes(rng.randrange(50)))
        for i in range(5)
    )
    return [
        Message(MessageType.VOTE, to=2, frm=1, term=5, log_term=4, index=99, force=True),
        Message(MessageType.PRE_VOTE, to=2, frm=1, term=6, log_term=4, index=99, leader_lost=True),
        Message(
            MessageType.APPEND, to=3, frm=1, term=3, log_term=3, index=9, entries=entries, commit=8
        ),
        Message(MessageType.APPEND, to=3, frm=1, term=3, entries=(Entry(3, 1),)),
        Message(
            MessageType.APPEND_RESP,
            to=1,
            frm=2,
            term=3,
            index=7,
            reject=True,
            reject_hint=4,
            log_term=2,
        ),
        Message(MessageType.HEARTBEAT, to=2, frm=1, term=2**40, commit=2**63, context=2**64 - 1),
        Message(
            MessageType.SNAPSHOT,
            to=2,
            frm=1,
            term=4,
            snapshot_meta=SnapshotMeta(100, 4, ConfState(frozenset({1, 2, 3}), frozenset({4}))),
            offset=1 << 20,
            data=b"\x00" * 1000,
            done=True,
        ),
        Message(MessageType.READ_INDEX, to=1, frm=3, context=12345, lease=True),
        Message(MessageType.TIMEOUT_NOW, to=2, frm=1, term=9),
    ]


@pytest.mark.parametrize("msg", sample_messages(), ids=lambda m: m.type.name)
def test_round_trip(msg: Message) -> None:
    assert decode_message(encode_message(msg)) == msg


def test_frame_prefixes_length() -> None:
    payload = encode_message(sample_messages()[0])
    framed = frame(payload)
    assert int.from_bytes(framed[:4], "big") == len(payload)
    assert framed[4:] == payload


def test_every_truncation_is_rejected() -> None:
    payload = encode_message(sample_messages()[1])
    for cut in range(len(payload)):
        with pytest.raises(CodecError):
            decode_message(payload[:cut])


def test_garbage_is_rejected_not_crashing() -> None:
    rng = random.Random(1)
    for _ in range(2000):
        blob = rng.randbytes(rng.randrange(200))
        with contextlib.suppress(CodecError):
            decode_message(blob)


def test_unknown_type_and_trailing_bytes() -> None:
    payload = bytearray(encode_message(sample_messages()[0]))
    payload[0] = 200
    with pytest.raises(CodecError, match="unknown message type"):
        decode_message(bytes(payload))
    with pytest.raises(CodecError):
        decode_message(encode_message(sample_messages()[0]) + b"x")


def test_huge_entry_count_rejected_cheaply() -> None:
    payload = bytearray(encode_message(Message(MessageType.APPEND, to=1, frm=2)))
    # n_entries is the u32 before the final u32 data_len in the fixed header.
    header_end = 2 + 9 * 8
    payload[header_end : header_end + 4] = (2**32 - 1).to_bytes(4, "big")
    with pytest.raises(CodecError, match="entry count"):
        decode_message(bytes(payload))


def test_unknown_entry_type_rejected() -> None:
    msg = Message(MessageType.APPEND, to=3, frm=1, term=3, entries=(Entry(3, 1, data=b"ab"),))
    payload = bytearray(encode_message(msg))
    header = 2 + 9 * 8 + 4 + 4
    payload[header + 16] = 7  # the entry header: term, index (u64 each), then its type
    with pytest.raises(CodecError, match="unknown entry type 7"):
        decode_message(bytes(payload))


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview], ids=lambda w: w.__name__)
def test_any_buffer_decodes_to_bytes(wrap: type) -> None:
    """Frames arrive as bytes, or as memoryviews of a sealed record: every entry's data and
    the message's own data come out as bytes either way, equal to what was encoded."""
    for msg in sample_messages():
        decoded = decode_message(wrap(encode_message(msg)))
        assert decoded == msg
        assert type(decoded.data) is bytes
        assert all(type(e.data) is bytes for e in decoded.entries)
