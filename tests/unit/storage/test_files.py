"""The file layer's durable positional writes and zero fill (the WAL's runway)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from raftnode.storage import FileSystem


def test_a_durable_write_lands_at_its_offset_and_counts_as_one_sync(tmp_path: Path) -> None:
    fs = FileSystem()
    f = fs.open_positional(tmp_path / "seg")
    fs.zero_fill(f, 0, 64)
    fs.write_durably_at(f, 8, b"frame")
    fs.close(f)
    assert (tmp_path / "seg").read_bytes() == bytes(8) + b"frame" + bytes(64 - 13)
    assert fs.fsync_count == 2  # the zero fill's fsync, then the write's own sync


def test_without_rwf_dsync_a_durable_write_is_a_write_then_fdatasync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filesystem that refuses RWF_DSYNC (EINVAL) gets write + fdatasync, now and after."""
    calls: list[str] = []

    def refuse(fd: int, buffers: list[bytes], offset: int, flags: int = 0) -> int:
        calls.append("pwritev")
        raise OSError(errno.EINVAL, "Invalid argument")

    real_fdatasync = os.fdatasync

    def fdatasync(fd: int) -> None:
        calls.append("fdatasync")
        real_fdatasync(fd)

    monkeypatch.setattr(os, "pwritev", refuse)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    fs = FileSystem()
    fs.dsync_flag = 0x2  # as if the platform had it
    f = fs.open_positional(tmp_path / "seg")
    fs.write_durably_at(f, 0, b"one")
    fs.write_durably_at(f, 3, b"two")
    fs.close(f)
    assert (tmp_path / "seg").read_bytes() == b"onetwo"
    assert calls == ["pwritev", "fdatasync", "fdatasync"]
    assert fs.dsync_flag is None


def test_other_errors_of_a_durable_write_are_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(fd: int, buffers: list[bytes], offset: int, flags: int = 0) -> int:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "pwritev", fail)
    fs = FileSystem()
    fs.dsync_flag = 0x2
    f = fs.open_positional(tmp_path / "seg")
    with pytest.raises(OSError, match="Input/output"):
        fs.write_durably_at(f, 0, b"frame")
    fs.close(f)
    assert fs.dsync_flag == 0x2


def test_a_short_durable_write_is_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.pwritev

    def short(fd: int, buffers: list[bytes], offset: int, flags: int = 0) -> int:
        return real(fd, [bytes(buffers[0])[:2]], offset, flags)

    monkeypatch.setattr(os, "pwritev", short)
    fs = FileSystem()
    if fs.dsync_flag is None:
        pytest.skip("no RWF_DSYNC on this platform")
    f = fs.open_positional(tmp_path / "seg")
    fs.write_durably_at(f, 0, b"frame")
    fs.close(f)
    assert (tmp_path / "seg").read_bytes() == b"frame"
