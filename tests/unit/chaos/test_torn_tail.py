"""The WAL damage the disk nemesis makes, checked against raftnode's own recovery: a torn frame
appended is a torn tail (dropped, every entry kept); a cut into the last frame loses that batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chaos.torn_tail import Mode, describe, script_argv
from raftnode.raft.types import Entry, HardState
from raftnode.storage.raft_storage import RaftStorage


def _write_log(data_dir: Path) -> None:
    with RaftStorage.open(data_dir) as storage:
        for first in (1, 4, 7):
            batch = [Entry(term=1, index=i, data=b"v%d" % i) for i in range(first, first + 3)]
            storage.persist(batch, HardState(term=1, vote=1, commit=first - 1))


def _damage(data_dir: Path, mode: Mode, seed: int) -> tuple[bool, str]:
    argv = [sys.executable, *script_argv(mode, seed, str(data_dir / "wal"))[1:]]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    return describe(run.stdout)


@pytest.mark.parametrize("seed", range(5))
def test_a_torn_frame_appended_is_dropped_and_every_entry_kept(tmp_path: Path, seed: int) -> None:
    _write_log(tmp_path)
    (segment,) = (tmp_path / "wal").iterdir()
    size = segment.stat().st_size
    damaged, note = _damage(tmp_path, "append", seed)
    assert damaged and "torn frame" in note and segment.stat().st_size > size
    with RaftStorage.open(tmp_path) as storage:
        assert storage.last_index == 9
    assert segment.stat().st_size == size, "recovery cut the torn frame off"


@pytest.mark.parametrize("seed", range(5))
def test_a_cut_into_the_last_frame_loses_that_batch(tmp_path: Path, seed: int) -> None:
    _write_log(tmp_path)
    damaged, note = _damage(tmp_path, "cut", seed)
    assert damaged and "lost" in note
    with RaftStorage.open(tmp_path) as storage:
        assert storage.last_index == 6


def test_nothing_is_done_to_a_log_already_damaged_or_absent(tmp_path: Path) -> None:
    (tmp_path / "wal").mkdir()
    assert _damage(tmp_path, "append", 1) == (False, f"skipped: no WAL segment in {tmp_path}/wal")
    _write_log(tmp_path / "n")
    _damage(tmp_path / "n", "append", 1)
    damaged, note = _damage(tmp_path / "n", "cut", 1)
    assert not damaged and "already damaged" in note


def test_a_script_that_prints_no_answer_is_an_error() -> None:
    with pytest.raises(ValueError, match="printed no JSON"):
        describe("Traceback (most recent call last): ...")
