"""Hypothesis fuzzing of every decoder that reads bytes from outside the process.

Each decoder meets garbage, truncation, bit flips and oversized length fields. The contract:
a specific, documented error type (``CodecError``, ``CorruptLogError``/``RecordError``,
``StoreFormatError``, ``ConfigError``), never another exception or a hang (every example has a
deadline, ``tests/fuzz/budget.py``), and never garbage taken for valid data: what the peer codec
accepts encodes back to the same bytes, what the WAL replays is a prefix of what was written,
a damaged snapshot is refused or reports a different checksum, and a config that loads has
every value in range.

Budget: ``RAFTNODE_FUZZ_EXAMPLES`` examples per property (``make test-fuzz`` small,
``make fuzz`` large).
"""

from __future__ import annotations

import json
import sqlite3
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from raftnode.config import MAX_CONFIG_BYTES, MAX_INTEGER, ConfigError, NodeConfig, load_config
from raftnode.kv.commands import Command
from raftnode.kv.store import KeyValueStore, StoreFormatError
from raftnode.raft.types import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    SnapshotMeta,
)
from raftnode.snapshot_file import describe, seal_and_map
from raftnode.storage.errors import CorruptLogError
from raftnode.storage.files import FileSystem
from raftnode.storage.records import (
    RECORD_FRAME_HEADER,
    LogReset,
    RecordError,
    decode_entries,
    encode_frame,
    encode_reset,
)
from raftnode.storage.segments import segment_name
from raftnode.storage.wal import WriteAheadLog
from raftnode.transport.codec import (
    MESSAGE_FRAME_HEADER,
    CodecError,
    decode_message,
    encode_message,
    frame,
)
from tests.fuzz.budget import fuzz_settings

# The snapshot fixture is 80 kB of bytes: hypothesis only warns that its repr is long.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

U64 = st.integers(min_value=0, max_value=(1 << 64) - 1)


def flip(data: bytes, bit: int) -> bytes:
    """``data`` with one bit inverted (``bit`` counts from the first byte's lowest bit)."""
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# -- the peer frame codec ------------------------------------------------------------------------

entries_st = st.lists(
    st.builds(
        Entry,
        term=U64,
        index=U64,
        type=st.sampled_from(EntryType),
        data=st.binary(max_size=64),
    ),
    max_size=4,
)
conf_st = st.sets(st.integers(1, 1000), max_size=6).flatmap(
    lambda ids: st.sets(st.sampled_from(sorted(ids)) if ids else st.nothing()).map(
        lambda voters: ConfState(frozenset(voters), frozenset(ids - voters))
    )
)
messages_st = st.builds(
    Message,
    type=st.sampled_from(MessageType),
    to=U64,
    frm=U64,
    term=U64,
    log_term=U64,
    index=U64,
    entries=entries_st.map(tuple),
    commit=U64,
    reject=st.booleans(),
    reject_hint=U64,
    context=U64,
    force=st.booleans(),
    lease=st.booleans(),
    leader_lost=st.booleans(),
    snapshot_meta=st.none() | st.builds(SnapshotMeta, index=U64, term=U64, conf=conf_st),
    offset=U64,
    data=st.binary(max_size=128),
    done=st.booleans(),
)


def decodes_canonically(buf: bytes) -> None:
    """``buf`` is refused with ``CodecError``, or it is exactly what the encoder writes."""
    try:
        message = decode_message(buf)
    except CodecError:
        return
    assert encode_message(message) == buf, "the decoder accepted bytes the encoder never writes"


@fuzz_settings
@given(messages_st)
def test_peer_codec_round_trips_every_message(message: Message) -> None:
    assert decode_message(encode_message(message)) == message


@fuzz_settings
@given(st.binary(max_size=512))
def test_peer_codec_garbage_is_refused_or_canonical(buf: bytes) -> None:
    decodes_canonically(buf)


@fuzz_settings
@given(messages_st, st.data())
def test_peer_codec_bit_flips_are_refused_or_canonical(message: Message, data: Any) -> None:
    buf = encode_message(message)
    bit = data.draw(st.integers(0, 8 * len(buf) - 1))
    decodes_canonically(flip(buf, bit))


@fuzz_settings
@given(messages_st, st.data())
def test_peer_codec_truncated_message_is_refused(message: Message, data: Any) -> None:
    buf = encode_message(message)
    cut = data.draw(st.integers(0, len(buf) - 1))
    with pytest.raises(CodecError):
        decode_message(buf[:cut])


# Offsets of the length and count fields in the header: n_entries u32 at 74, data_len u32 at 78.
_N_ENTRIES_AT, _DATA_LEN_AT = 74, 78


@fuzz_settings
@given(
    messages_st,
    st.sampled_from([_N_ENTRIES_AT, _DATA_LEN_AT]),
    st.integers(1 << 16, (1 << 32) - 1),
)
def test_peer_codec_oversized_counts_are_refused(message: Message, at: int, value: int) -> None:
    buf = bytearray(encode_message(message))
    struct.pack_into(">I", buf, at, value)
    with pytest.raises(CodecError):
        decode_message(bytes(buf))


@fuzz_settings
@given(messages_st.filter(lambda m: len(m.entries) > 0), st.integers(1 << 16, (1 << 32) - 1))
def test_peer_codec_oversized_entry_length_is_refused(message: Message, value: int) -> None:
    buf = bytearray(encode_message(message))
    meta = message.snapshot_meta
    first_entry = 82 + (
        0 if meta is None else 20 + 8 * (len(meta.conf.voters) + len(meta.conf.learners))
    )
    struct.pack_into(">I", buf, first_entry + 17, value)  # term u64, index u64, type u8, len u32
    with pytest.raises(CodecError):
        decode_message(bytes(buf))


@fuzz_settings
@given(messages_st)
def test_peer_frame_header_carries_the_payload_length(message: Message) -> None:
    payload = encode_message(message)
    framed = frame(payload)
    (length,) = MESSAGE_FRAME_HEADER.unpack_from(framed)
    assert length == len(payload)
    assert decode_message(framed[MESSAGE_FRAME_HEADER.size :]) == message


def test_peer_codec_refuses_unknown_flag_bits() -> None:
    """Regression (fuzzing found it): flag bits 64 and 128 were ignored, so a corrupted header
    decoded as a different, valid-looking message."""
    buf = bytearray(encode_message(Message(MessageType.APPEND, 1, 2)))
    for bit in (64, 128):
        buf[1] = bit
        with pytest.raises(CodecError, match="unknown flag bits"):
            decode_message(bytes(buf))


def _with_conf_ids(voters: list[int], learners: list[int]) -> bytes:
    meta = SnapshotMeta(7, 3, ConfState(frozenset([1]), frozenset()))
    buf = encode_message(Message(MessageType.SNAPSHOT, 1, 2, snapshot_meta=meta))
    head = buf[:82] + struct.pack(">QQHH", 7, 3, len(voters), len(learners))
    return head + b"".join(struct.pack(">Q", i) for i in (*voters, *learners))


@pytest.mark.parametrize(
    ("voters", "learners", "why"),
    [
        ([2, 1], [], "not sorted"),
        ([1, 1], [], "not sorted"),
        ([1], [3, 3], "not sorted"),
        ([1, 2], [2], "both voter and learner"),
    ],
)
def test_peer_codec_refuses_a_non_canonical_snapshot_conf(
    voters: list[int], learners: list[int], why: str
) -> None:
    """Regression (fuzzing found it): duplicate or unsorted ids, and an id that is both voter
    and learner, decoded into a configuration the sender never had."""
    with pytest.raises(CodecError, match=why):
        decode_message(_with_conf_ids(voters, learners))


# -- the write-ahead log -------------------------------------------------------------------------

batches_st = st.lists(
    st.lists(st.binary(max_size=40), min_size=1, max_size=4), min_size=1, max_size=5
)


def _frames(batches: list[list[bytes]]) -> tuple[list[bytes], list[list[Entry]]]:
    """Encoded frames and their entries: contiguous indexes from 1, term 1."""
    frames, entries, index = [], [], 1
    for batch in batches:
        batch_entries = [Entry(1, index + i, EntryType.NORMAL, d) for i, d in enumerate(batch)]
        index += len(batch)
        frames.append(encode_frame(batch_entries))
        entries.append(batch_entries)
    return frames, entries


def _replay(segment: bytes) -> list[Entry]:
    """Recover a WAL directory holding ``segment`` as its only file."""
    with tempfile.TemporaryDirectory(prefix="raftnode-fuzz-wal-") as d:
        directory = Path(d) / "wal"
        directory.mkdir()
        (directory / segment_name(1, 1)).write_bytes(segment)
        wal, entries = WriteAheadLog.open(
            FileSystem(), directory, segment_bytes=1 << 20, snapshot_index=0
        )
        wal.close()
        return entries


def _concat(groups: list[list[Entry]]) -> list[Entry]:
    return [e for group in groups for e in group]


@fuzz_settings
@given(batches_st, st.data())
def test_wal_bit_flip_is_refused_or_drops_only_the_torn_tail(
    batches: list[list[bytes]], data: Any
) -> None:
    frames, entries = _frames(batches)
    segment = b"".join(frames)
    bit = data.draw(st.integers(0, 8 * len(segment) - 1))
    starts = [sum(len(f) for f in frames[:i]) for i in range(len(frames))]
    damaged = max(i for i, s in enumerate(starts) if s <= bit // 8)
    try:
        replayed = _replay(flip(segment, bit))
    except CorruptLogError:
        assert damaged < len(frames) - 1, "the last frame's damage is a torn write, not corruption"
        return
    # Only the last frame may be cut off as a torn write; the flipped one never replays.
    assert damaged == len(frames) - 1
    assert replayed == _concat(entries[:damaged])


@fuzz_settings
@given(batches_st, st.data())
def test_wal_truncation_keeps_every_whole_frame(batches: list[list[bytes]], data: Any) -> None:
    frames, entries = _frames(batches)
    segment = b"".join(frames)
    cut = data.draw(st.integers(0, len(segment)))
    whole = sum(1 for i in range(len(frames)) if len(b"".join(frames[: i + 1])) <= cut)
    assert _replay(segment[:cut]) == _concat(entries[:whole])


@fuzz_settings
@given(batches_st, st.binary(min_size=1, max_size=64))
def test_wal_junk_after_the_last_frame_is_a_torn_tail(
    batches: list[list[bytes]], junk: bytes
) -> None:
    frames, entries = _frames(batches)
    assert _replay(b"".join(frames) + junk) == _concat(entries)


@fuzz_settings
@given(batches_st, st.data(), st.integers(1 << 20, (1 << 32) - 1))
def test_wal_oversized_frame_length_is_refused_or_torn(
    batches: list[list[bytes]], data: Any, length: int
) -> None:
    frames, entries = _frames(batches)
    at = data.draw(st.integers(0, len(frames) - 1))
    frames[at] = struct.pack("<I", length) + frames[at][4:]
    try:
        replayed = _replay(b"".join(frames))
    except CorruptLogError:
        assert at < len(frames) - 1
        return
    assert at == len(frames) - 1
    assert replayed == _concat(entries[:at])


@fuzz_settings
@given(st.binary(max_size=512))
def test_wal_garbage_segment_is_refused_or_empty(segment: bytes) -> None:
    try:
        replayed = _replay(segment)
    except CorruptLogError:
        return
    assert replayed == [], "random bytes replayed as entries"


@fuzz_settings
@given(st.binary(min_size=1, max_size=256))
def test_wal_record_decoder_refuses_or_is_canonical(payload: bytes) -> None:
    """Past the CRC (an encoder bug or version skew): ``RecordError``, or exactly the bytes the
    encoder writes for what was decoded."""
    try:
        decoded = decode_entries(memoryview(payload))
    except RecordError:
        return
    if isinstance(decoded, LogReset):
        expected = encode_reset(decoded.index, decoded.term)
    else:
        expected = encode_frame(decoded)
    assert expected[RECORD_FRAME_HEADER.size :] == payload


def test_wal_reset_record_with_data_is_refused() -> None:
    """Regression (fuzzing found it): a RESET record carrying an entry type or a data length
    decoded as a plain reset; only the encoder's own form is accepted now."""
    payload = struct.pack("<BQQBI", 2, 1, 5, 1, 0)
    with pytest.raises(RecordError, match="reset record with entry type 1"):
        decode_entries(memoryview(payload))
    payload = struct.pack("<BQQBI", 2, 1, 5, 0, 3)
    with pytest.raises(RecordError, match="3 data bytes"):
        decode_entries(memoryview(payload))


# -- the snapshot file reader --------------------------------------------------------------------


@pytest.fixture(scope="module")
def snapshot_file() -> Iterator[bytes]:
    """A real snapshot file (as ``raftnode snapshot save`` writes one): a few keys, sealed."""
    with tempfile.TemporaryDirectory(prefix="raftnode-fuzz-snap-") as d:
        store = KeyValueStore.open(Path(d) / "kv.sqlite")
        try:
            for i in range(1, 30):
                store.apply(i, Command("put", f"key-{i}", "v" * (i * 7)).encode())
            store.commit()
            sealed = Path(d) / "snap.sqlite"
            store.snapshot_to(sealed)
        finally:
            store.close()
        meta = SnapshotMeta(29, 2, ConfState(frozenset([1, 2, 3])))
        mapped, _ = seal_and_map(sealed, meta, {})
        try:
            yield bytes(mapped)
        finally:
            mapped.close()


def _describe(content: bytes) -> Any:
    with tempfile.TemporaryDirectory(prefix="raftnode-fuzz-snap-") as d:
        path = Path(d) / "snapshot"
        path.write_bytes(content)
        return describe(path)


def test_snapshot_reader_reads_the_intact_file(snapshot_file: bytes) -> None:
    desc = _describe(snapshot_file)
    assert (desc.index, desc.term, desc.voters, desc.keys) == (29, 2, [1, 2, 3], 29)


def _refused_or_detectable(original: bytes, content: bytes) -> None:
    """A damaged snapshot is refused (``StoreFormatError``), or what it reports differs from
    the original's SHA-256 (which ``restore``/InstallSnapshot check against the sender's)."""
    try:
        desc = _describe(content)
    except StoreFormatError:
        return
    assert content == original or desc.sha256 != _describe(original).sha256
    assert isinstance(desc.index, int) and isinstance(desc.term, int)
    assert all(isinstance(i, int) for i in (*desc.voters, *desc.learners))


@fuzz_settings
@given(st.data())
def test_snapshot_reader_bit_flips(snapshot_file: bytes, data: Any) -> None:
    bit = data.draw(st.integers(0, 8 * len(snapshot_file) - 1))
    _refused_or_detectable(snapshot_file, flip(snapshot_file, bit))


@fuzz_settings
@given(st.data())
def test_snapshot_reader_truncation(snapshot_file: bytes, data: Any) -> None:
    cut = data.draw(st.integers(0, len(snapshot_file) - 1))
    with pytest.raises(StoreFormatError):
        _describe(snapshot_file[:cut])


@fuzz_settings
@given(st.data(), st.binary(min_size=1, max_size=64))
def test_snapshot_reader_overwritten_bytes(snapshot_file: bytes, data: Any, junk: bytes) -> None:
    at = data.draw(st.integers(0, len(snapshot_file) - 1))
    content = snapshot_file[:at] + junk + snapshot_file[at + len(junk) :]
    _refused_or_detectable(snapshot_file, content[: len(snapshot_file)])


@fuzz_settings
@given(st.binary(max_size=2048), st.booleans())
def test_snapshot_reader_garbage(garbage: bytes, sqlite_magic: bool) -> None:
    content = (b"SQLite format 3\x00" + garbage) if sqlite_magic else garbage
    with pytest.raises(StoreFormatError):
        _describe(content)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("voters", "[1,2"),
        ("voters", '{"1": 2}'),
        ("voters", "[2,1]"),
        ("learners", "[true]"),
        ("peers", "[1]"),
        ("peers", '{"x": "h:1"}'),
        ("peers", "null"),
    ],
)
def test_snapshot_reader_refuses_a_damaged_raft_position(
    snapshot_file: bytes, column: str, value: str
) -> None:
    """Regression (fuzzing found it): a damaged JSON column of ``raft_position`` escaped as a
    ``JSONDecodeError`` (or was handed on as garbage) instead of ``StoreFormatError``."""
    with tempfile.TemporaryDirectory(prefix="raftnode-fuzz-snap-") as d:
        path = Path(d) / "snapshot"
        path.write_bytes(snapshot_file)
        conn = sqlite3.connect(path)
        conn.execute(f"UPDATE raft_position SET {column} = ?", (value,))
        conn.commit()
        conn.close()
        with pytest.raises(StoreFormatError, match=f"damaged Raft position: {column}"):
            describe(path)


# -- the config parser ---------------------------------------------------------------------------


def _valid_config(base: Path) -> dict[str, Any]:
    return {
        "node_id": 1,
        "data_dir": str(base / "data"),
        "insecure": True,
        "listen": {
            "client": "127.0.0.1:8081",
            "health": "127.0.0.1:10001",
            "peer": "127.0.0.1:9081",
        },
        "cluster": [
            {"id": 1, "name": "n1", "peer": "127.0.0.1:9081", "client": "127.0.0.1:8081"},
            {"id": 2, "name": "n2", "peer": "127.0.0.1:9082", "client": "127.0.0.1:8082"},
        ],
        "timing": {"tick_ms": 50, "election_ticks": 10},
        "limits": {"max_key_bytes": 1024},
        "log": {"level": "info"},
        "auth": {"anonymous_role": "admin"},
    }


def _load(content: bytes) -> NodeConfig | None:
    """The config loaded from ``content``, or None when refused with ``ConfigError``; a config
    that loads must be internally consistent (nothing out of range slipped through)."""
    with tempfile.TemporaryDirectory(prefix="raftnode-fuzz-cfg-") as d:
        path = Path(d) / "node.yaml"
        path.write_bytes(content)
        try:
            config = load_config(path)
        except ConfigError as e:
            assert e.problems and all(isinstance(p, str) and p for p in e.problems)
            return None
    assert config.node_id in {m.id for m in config.cluster}
    for address in (config.listen_client, config.listen_health, config.listen_peer):
        assert 0 < address.port < 65536
    for section in (config.timing, config.limits, config.snapshot):
        for name in type(section).__dataclass_fields__:
            value = getattr(section, name)
            assert isinstance(value, int) and 0 <= value <= MAX_INTEGER
    return config


def _valid_yaml() -> bytes:
    return yaml.safe_dump(_valid_config(Path("/nonexistent"))).encode()


def test_config_parser_loads_the_valid_config() -> None:
    assert _load(_valid_yaml()) is not None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
config_paths = st.sampled_from(
    [
        ("node_id",),
        ("data_dir",),
        ("insecure",),
        ("listen",),
        ("listen", "client"),
        ("listen", "peer"),
        ("cluster",),
        ("cluster", 0),
        ("cluster", 0, "id"),
        ("cluster", 1, "peer"),
        ("cluster", 1, "name"),
        ("timing",),
        ("timing", "tick_ms"),
        ("timing", "election_ticks"),
        ("limits", "max_key_bytes"),
        ("log", "level"),
        ("secret_file",),
        ("initial_cluster_state",),
        ("initial_cluster_token",),
        ("snapshot",),
        ("unknown",),
    ]
)


@fuzz_settings
@given(config_paths, json_values)
def test_config_parser_any_value_anywhere(path: tuple[Any, ...], value: Any) -> None:
    config = _valid_config(Path("/nonexistent"))
    target: Any = config
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    _load(yaml.safe_dump(config).encode())


@fuzz_settings
@given(st.binary(max_size=600))
def test_config_parser_garbage(garbage: bytes) -> None:
    _load(garbage)


@fuzz_settings
@given(st.data())
def test_config_parser_bit_flips_and_truncation(data: Any) -> None:
    text = _valid_yaml()
    bit = data.draw(st.integers(0, 8 * len(text) - 1))
    cut = data.draw(st.integers(0, len(text)))
    _load(flip(text, bit)[:cut])


@fuzz_settings
@given(st.integers(min_value=MAX_INTEGER + 1) | st.integers(max_value=-1))
def test_config_parser_integers_out_of_range(value: int) -> None:
    config = _valid_config(Path("/nonexistent"))
    config["limits"]["max_key_bytes"] = value
    assert _load(yaml.safe_dump(config).encode()) is None


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"node_id: 1\n\xff\xfe\n", "not UTF-8 text"),
        (b"[" * 50_000, "nested too deeply"),
        (b"a: " + b"{a: " * 5_000, "nested too deeply"),
        (b"node_id: 1" + b"0" * 5_000 + b"\n", "not a node config"),
        (b"#" * (MAX_CONFIG_BYTES + 1), "larger than"),
    ],
)
def test_config_parser_refuses_what_crashed_it(content: bytes, problem: str) -> None:
    """Regression (fuzzing found them): invalid UTF-8 raised ``UnicodeDecodeError``, deep nesting
    ``RecursionError`` and an integer of thousands of digits ``ValueError``, not ``ConfigError``."""
    with tempfile.TemporaryDirectory(prefix="raftnode-fuzz-cfg-") as d:
        path = Path(d) / "node.yaml"
        path.write_bytes(content)
        with pytest.raises(ConfigError, match=problem):
            load_config(path)


def test_config_parser_refuses_ids_past_64_bits() -> None:
    """Regression: a node id past 2**63-1 loaded, then broke the peer codec (u64) at runtime."""
    config = _valid_config(Path("/nonexistent"))
    config["cluster"][1]["id"] = 1 << 64
    with tempfile.TemporaryDirectory(prefix="raftnode-fuzz-cfg-") as d:
        path = Path(d) / "node.yaml"
        path.write_text(json.dumps(config))
        with pytest.raises(ConfigError, match=r"cluster\[1\]\.id: must be <="):
            load_config(path)


def test_config_parser_refuses_non_ascii_port_digits() -> None:
    """Regression: ``"host:²"`` passed ``str.isdigit`` and failed in ``int()`` with a message
    about base-10 literals instead of the port rule."""
    config = _valid_config(Path("/nonexistent"))
    config["listen"]["client"] = "127.0.0.1:\u00b2"
    with tempfile.TemporaryDirectory(prefix="raftnode-fuzz-cfg-") as d:
        path = Path(d) / "node.yaml"
        path.write_text(json.dumps(config))
        with pytest.raises(ConfigError, match=r"listen\.client: port must be 1-65535"):
            load_config(path)


@pytest.mark.parametrize(
    ("assignment", "why"),
    [
        ("revision = CAST(x'80ff' AS TEXT)", "damaged raftnode key-value store"),
        ("revision = 'seven'", "meta row"),
        ("key_count = -1", "meta row"),
    ],
)
def test_snapshot_reader_refuses_a_damaged_meta_row(
    snapshot_file: bytes, assignment: str, why: str
) -> None:
    """Regression (fuzzing found it): a meta column damaged into text that is not UTF-8 escaped
    as ``UnicodeDecodeError``; text or negative numbers raised ``ValueError`` or passed."""
    with tempfile.TemporaryDirectory(prefix="raftnode-fuzz-snap-") as d:
        path = Path(d) / "snapshot"
        path.write_bytes(snapshot_file)
        conn = sqlite3.connect(path)
        conn.execute(f"UPDATE meta SET {assignment}")
        conn.commit()
        conn.close()
        with pytest.raises(StoreFormatError, match=why):
            describe(path)
