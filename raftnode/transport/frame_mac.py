"""A MAC on the peer frames (peer protocol 8 and later, HMAC mode only).

After the handshake (``raftnode.transport.auth``) each side holds a key per direction. The
sender's length-prefixed frames (``raftnode.transport.codec``), as many as one write flushes,
travel in records, each with a tag::

    record = length u32 | frames | tag[16]
    tag    = HMAC-SHA256(key, seq u64 | length u32 | frames)[:16]

``seq`` counts the records of one direction of one connection from 0; it is not sent, each side
keeps its own, so a record injected, altered, replayed, reordered, truncated, or dropped with
the stream resumed after it fails the check of that record or of the next one, and nothing in
it is delivered. The key belongs to one connection and one direction: nothing recorded on
another connection verifies. A 128-bit tag is what TLS's AEADs carry too. One tag per record,
not per frame: under load a write carries many frames, and the MAC's cost per message falls
with the batch (TLS does the same).

With ``peer_tls`` the frames travel without records: TLS protects them already.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Iterator
from hashlib import sha256

from raftnode.transport.codec import MESSAGE_FRAME_HEADER

TAG_BYTES = 16
RECORD_HEADER = MESSAGE_FRAME_HEADER
"""Before every record: the length of its frames (the tag follows them)."""
RECORD_TARGET_BYTES = 1 << 20
"""A record closes once it holds this many bytes of frames (a larger frame gets its own)."""
_SEQ_AND_LENGTH = struct.Struct(">QI")


class FrameAuthError(Exception):
    """A record whose tag does not verify; the stream must be closed."""


class RecordSealer:
    """Seals the frames of one direction of one connection into records, in sending order."""

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, digestmod=sha256)
        self.seq = 0

    def seal(self, frames: bytes) -> bytes:
        """One record of ``frames`` (whole frames, concatenated), tagged with the next
        sequence number."""
        tag = _tag(self._keyed, self.seq, frames)
        self.seq += 1
        return RECORD_HEADER.pack(len(frames)) + frames + tag

    def seal_all(self, frames: list[bytes]) -> bytes:
        """``frames`` in records of about ``RECORD_TARGET_BYTES`` at most, concatenated."""
        out: list[bytes] = []
        group: list[bytes] = []
        size = 0
        for f in frames:
            if group and size + len(f) > RECORD_TARGET_BYTES:
                out.append(self.seal(b"".join(group)))
                group, size = [], 0
            group.append(f)
            size += len(f)
        if group:
            out.append(self.seal(b"".join(group)))
        return b"".join(out)


class RecordOpener:
    """Checks the records of one direction of one connection, in receiving order."""

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, digestmod=sha256)
        self.seq = 0

    def open(self, body: bytes) -> bytes:
        """The frames of a record's ``body`` (what followed its length field: frames and tag);
        raises ``FrameAuthError`` when the tag does not verify for the next sequence number."""
        if len(body) < TAG_BYTES:
            raise FrameAuthError(f"record of {len(body)} bytes has no room for its tag")
        frames, tag = body[:-TAG_BYTES], body[-TAG_BYTES:]
        if not hmac.compare_digest(tag, _tag(self._keyed, self.seq, frames)):
            raise FrameAuthError(
                f"record {self.seq} fails its MAC (altered, injected, replayed, reordered, "
                "truncated, or one before it dropped)"
            )
        self.seq += 1
        return frames


def split_frames(frames: bytes) -> Iterator[memoryview]:
    """The payloads of the whole frames in an opened record; raises ``ValueError`` when the
    last one is cut short (a sender's bug: the record's MAC verified)."""
    view = memoryview(frames)
    pos, end = 0, len(view)
    while pos < end:
        if pos + RECORD_HEADER.size > end:
            raise ValueError("a record ends inside a frame's length")
        (length,) = RECORD_HEADER.unpack_from(view, pos)
        pos += RECORD_HEADER.size
        if pos + length > end:
            raise ValueError(f"a frame of {length} bytes runs past the end of its record")
        yield view[pos : pos + length]
        pos += length


def _tag(keyed: hmac.HMAC, seq: int, frames: bytes) -> bytes:
    h = keyed.copy()  # the key's inner and outer pads are hashed once per connection
    h.update(_SEQ_AND_LENGTH.pack(seq, len(frames)))
    h.update(frames)
    return h.digest()[:TAG_BYTES]
