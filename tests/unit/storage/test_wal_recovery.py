"""Recovery of the write-ahead log from torn writes, bit rot and missing files."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from raftnode.raft.types import Entry, HardState
from raftnode.storage import CorruptLogError, RaftStorage
from raftnode.storage.records import encode_frame


def batch(first: int, last: int, term: int = 1) -> list[Entry]:
    return [Entry(term, i, data=f"value-{i:04d}".encode() * 3) for i in range(first, last + 1)]


def segments(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "wal").glob("*.wal"))


def recover(data_dir: Path, segment_bytes: int = 64 << 20) -> list[Entry]:
    with RaftStorage.open(data_dir, segment_bytes=segment_bytes) as storage:
        return storage.entries()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "node"


def write_batches(data_dir: Path, batches: list[list[Entry]], segment_bytes: int = 64 << 20):
    with RaftStorage.open(data_dir, segment_bytes=segment_bytes) as storage:
        for entries in batches:
            storage.persist(entries, HardState(term=1, vote=1))


def test_cut_at_every_byte_recovers_exactly_the_complete_batches(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    batches = [batch(1, 3), batch(4, 4), batch(5, 9), batch(10, 11)]
    write_batches(data_dir, batches)
    (segment,) = segments(data_dir)
    original = segment.read_bytes()
    boundaries = [0]
    for entries in batches:
        boundaries.append(boundaries[-1] + len(encode_frame(entries)))
    assert boundaries[-1] == len(original)
    start = boundaries[1]  # cut anywhere in the last three batches
    for cut in range(start, len(original) + 1):
        segment.write_bytes(original[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="raftnode.storage"):
            recovered = recover(data_dir)
        complete = max(i for i, b in enumerate(boundaries) if b <= cut)
        expected = [e for entries in batches[:complete] for e in entries]
        assert recovered == expected, f"cut at {cut}"
        torn = cut not in boundaries
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert bool(warnings) == torn, f"cut at {cut}: {[w.getMessage() for w in warnings]}"
        if torn:
            assert vars(warnings[0])["fields"]["offset"] == boundaries[complete]
            assert segment.name in vars(warnings[0])["fields"]["file"]
            assert segment.stat().st_size == boundaries[complete]  # repaired on disk


def test_after_repairing_a_torn_tail_new_appends_survive_restart(data_dir: Path) -> None:
    write_batches(data_dir, [batch(1, 5), batch(6, 10)])
    (segment,) = segments(data_dir)
    segment.write_bytes(segment.read_bytes()[:-7])
    with RaftStorage.open(data_dir) as storage:
        assert storage.entries() == batch(1, 5)
        storage.persist(batch(6, 8, term=2))
    assert recover(data_dir) == batch(1, 5) + batch(6, 8, term=2)


def test_a_zero_filled_tail_is_the_runway_not_damage(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What a process that died leaves: its frames, then the zeros laid ahead of them. The
    zeros are kept as the runway (no warning), and the next batch lands right after the
    last frame."""
    write_batches(data_dir, [batch(1, 5)])
    (segment,) = segments(data_dir)
    frames = segment.read_bytes()
    segment.write_bytes(frames + b"\0" * 4096)
    with (
        caplog.at_level(logging.WARNING, logger="raftnode.storage"),
        RaftStorage.open(data_dir) as storage,
    ):
        assert storage.entries() == batch(1, 5)
        assert segment.stat().st_size == len(frames) + 4096  # kept, not truncated
        storage.persist(batch(6, 7))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert recover(data_dir) == batch(1, 7)
    assert segment.read_bytes() == frames + encode_frame(batch(6, 7))  # cut back on close


def test_a_torn_frame_on_the_runway_is_cut_off_with_the_zeros_after_it(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_batches(data_dir, [batch(1, 5)])
    (segment,) = segments(data_dir)
    frames = segment.read_bytes()
    torn = encode_frame(batch(6, 9))[:-5]
    segment.write_bytes(frames + torn + b"\0" * 4096)
    with caplog.at_level(logging.WARNING, logger="raftnode.storage"):
        assert recover(data_dir) == batch(1, 5)
    (warning,) = [r for r in caplog.records if r.getMessage() == "wal torn tail truncated"]
    assert vars(warning)["fields"]["dropped_bytes"] == len(torn) + 4096
    assert segment.stat().st_size == len(frames)


def test_zeros_at_the_end_of_a_segment_before_the_last_are_corruption(data_dir: Path) -> None:
    """Only the active segment has a runway (a full one is cut back before the next starts),
    so zeros at the end of an earlier one are lost data."""
    write_batches(data_dir, [batch(i, i + 9) for i in range(1, 60, 10)], segment_bytes=600)
    first, *_rest = segments(data_dir)
    assert _rest
    first.write_bytes(first.read_bytes() + b"\0" * 512)
    with pytest.raises(CorruptLogError):
        recover(data_dir, segment_bytes=600)


def test_the_runway_is_laid_ahead_and_full_segments_are_cut_back(data_dir: Path) -> None:
    from raftnode.storage.wal import RUNWAY_BYTES

    segment_bytes = 4 * RUNWAY_BYTES
    storage = RaftStorage.open(data_dir, segment_bytes=segment_bytes)
    storage.persist(batch(1, 5))
    (segment,) = segments(data_dir)
    assert segment.stat().st_size == RUNWAY_BYTES  # zeros laid ahead of the first batch
    big = [[Entry(1, i, data=bytes([i]) * 300_000)] for i in range(6, 20)]
    frames = [len(encode_frame(b)) for b in [batch(1, 5), *big]]
    in_first = next(n for n in range(len(frames)) if sum(frames[: n + 1]) > segment_bytes)
    for entries in big:
        storage.persist(entries)
    first, second = segments(data_dir)
    assert first.stat().st_size == sum(frames[:in_first])  # frames only: no zeros left
    assert second.stat().st_size > sum(frames[in_first:])  # the active one has its runway
    storage.close()
    assert second.stat().st_size == sum(frames[in_first:])  # cut back on close
    assert recover(data_dir, segment_bytes=segment_bytes) == batch(1, 5) + [
        e for b in big for e in b
    ]


def test_bit_flips_in_the_last_frame_are_truncated_as_a_torn_tail(data_dir: Path) -> None:
    batches = [batch(1, 4), batch(5, 6), batch(7, 8)]
    write_batches(data_dir, batches)
    (segment,) = segments(data_dir)
    original = segment.read_bytes()
    last_frame = len(original) - len(encode_frame(batches[-1]))
    for position in range(last_frame, len(original)):
        damaged = bytearray(original)
        damaged[position] ^= 0x04
        segment.write_bytes(bytes(damaged))
        assert recover(data_dir) == batch(1, 6), f"flip at {position}"


def test_bit_flips_mid_file_followed_by_valid_frames_refuse_to_start(data_dir: Path) -> None:
    batches = [batch(1, 4), batch(5, 6), batch(7, 8)]
    write_batches(data_dir, batches)
    (segment,) = segments(data_dir)
    original = segment.read_bytes()
    middle = len(encode_frame(batches[0]))
    middle_end = middle + len(encode_frame(batches[1]))
    for position in range(middle, middle_end):
        damaged = bytearray(original)
        damaged[position] ^= 0x04
        segment.write_bytes(bytes(damaged))
        with pytest.raises(CorruptLogError) as caught:
            recover(data_dir)
        assert caught.value.path == segment
        assert caught.value.offset == middle
        assert f"{segment} at byte offset {middle}" in str(caught.value)
        assert segment.read_bytes() == bytes(damaged), "refusing must not repair anything"


def test_damage_in_an_earlier_segment_refuses_to_start(data_dir: Path) -> None:
    frame_size = len(encode_frame(batch(1, 5)))
    per_segment = 3 * frame_size
    write_batches(data_dir, [batch(i, i + 4) for i in range(1, 60, 5)], segment_bytes=per_segment)
    files = segments(data_dir)
    assert len(files) == 4
    victim = files[1]
    original = victim.read_bytes()
    for position in (3, frame_size + 20, len(original) - 1):
        damaged = bytearray(original)
        damaged[position] ^= 0x80
        victim.write_bytes(bytes(damaged))
        with pytest.raises(CorruptLogError) as caught:
            recover(data_dir, segment_bytes=per_segment)
        assert caught.value.path == victim
        assert caught.value.offset == (position // frame_size) * frame_size
    victim.write_bytes(original[:-1])  # a torn write cannot happen outside the last segment
    with pytest.raises(CorruptLogError, match=victim.name):
        recover(data_dir, segment_bytes=per_segment)


def test_a_missing_segment_is_reported_as_missing_entries(data_dir: Path) -> None:
    write_batches(data_dir, [batch(i, i + 4) for i in range(1, 60, 5)], segment_bytes=600)
    files = segments(data_dir)
    assert len(files) >= 3
    files[1].unlink()
    with pytest.raises(CorruptLogError, match="missing"):
        recover(data_dir, segment_bytes=600)
    shutil.rmtree(data_dir / "wal")
    (data_dir / "wal").mkdir()
    assert recover(data_dir) == []


def test_conflicting_suffix_truncation_survives_restart(data_dir: Path) -> None:
    write_batches(data_dir, [batch(1, 10)])
    with RaftStorage.open(data_dir) as storage:
        storage.persist(batch(6, 7, term=2), HardState(term=2))
    assert recover(data_dir) == batch(1, 5) + batch(6, 7, term=2)


def test_truncation_reaching_back_into_an_earlier_segment_survives_restart(data_dir: Path) -> None:
    write_batches(data_dir, [batch(i, i + 4) for i in range(1, 30, 5)], segment_bytes=300)
    assert len(segments(data_dir)) >= 3
    with RaftStorage.open(data_dir, segment_bytes=300) as storage:
        storage.persist(batch(3, 4, term=3), HardState(term=3))
        storage.persist(batch(5, 5, term=3))
    assert recover(data_dir, segment_bytes=300) == batch(1, 2) + batch(3, 5, term=3)


def test_segments_roll_over_at_the_configured_size(data_dir: Path) -> None:
    frame_size = len(encode_frame(batch(1, 5)))
    write_batches(
        data_dir, [batch(i, i + 4) for i in range(1, 50, 5)], segment_bytes=3 * frame_size
    )
    files = segments(data_dir)
    assert len(files) == 4  # 10 frames, 3 per segment
    assert all(f.stat().st_size <= 3 * frame_size for f in files)
    assert recover(data_dir, segment_bytes=3 * frame_size) == batch(1, 50)
