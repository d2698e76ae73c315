"""full-disk's guest scripts run for real, in a private mount namespace on this machine (root
only): a data dir moved onto a bounded tmpfs, filled to the last byte, emptied, moved back with
every byte the node wrote meanwhile. ``systemctl`` is a stand-in that logs its calls."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from chaos import full_disk

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare for a private mount namespace",
)


def _script(text: str, root: Path) -> str:
    return (
        text.replace(full_disk.DATA_DIR, str(root / "data"))
        .replace(full_disk.SMALL_DISK, str(root / "small"))
        .replace(full_disk.CONFIG, str(root / "raftnode.yaml"))
    )


def test_the_scripts_fill_a_bounded_tmpfs_and_bring_the_data_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "wal").mkdir(parents=True)
    (data / "wal" / "segment").write_bytes(os.urandom(200_000))
    (tmp_path / "raftnode.yaml").write_text("limits:\n  min_free_disk_bytes: 1048576\n")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/systemctl.log\n')
    (fake / "systemctl").chmod(0o755)
    for name in ("MOVE_TO_SMALL_DISK", "FILL", "EMPTY", "RESTORE_DISK"):
        (tmp_path / f"{name}.sh").write_text(_script(getattr(full_disk, name), tmp_path))
    d, t = data, tmp_path
    # One shell in one private mount namespace: nothing it mounts is seen outside it.
    program = f"""set -e
sh {t}/MOVE_TO_SMALL_DISK.sh > {t}/move.json
mountpoint -q {d}
sh {t}/FILL.sh > {t}/fill.json
if echo more > {d}/refused 2>/dev/null; then echo "a full disk took a write" >&2; exit 9; fi
sh {t}/EMPTY.sh
echo written-after > {d}/after
sh {t}/RESTORE_DISK.sh
if mountpoint -q {d}; then echo "still mounted" >&2; exit 8; fi
"""
    env = {"PATH": f"{fake}:/usr/sbin:/usr/bin:/sbin:/bin"}
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", program],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    moved = json.loads((tmp_path / "move.json").read_text())
    assert moved["reserve"] == 1048576
    # Twice the data: a catch-up may bring a snapshot as large as the store beside the old one
    # (a long run's node crash-looped on a tmpfs sized to the data alone, before the fill).
    expected = 2 * moved["used"] + 1048576 + full_disk.SLACK_BYTES
    assert moved["size"] == -(-expected // 4096) * 4096
    filled = json.loads((tmp_path / "fill.json").read_text())
    assert filled["left"] == 0 and filled["filled"] > full_disk.SLACK_BYTES
    assert (data / "wal" / "segment").stat().st_size == 200_000
    assert (data / "after").read_text() == "written-after\n", "writes made on the tmpfs kept"
    assert not (tmp_path / "small").exists()
    calls = (tmp_path / "systemctl.log").read_text().split("\n")
    assert calls[0] == "stop raftnode" and "start raftnode" in calls
