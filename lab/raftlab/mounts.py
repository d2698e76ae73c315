"""Overlay mounts for guest disks, and safe removal of trees that may still hold mounts."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .commands import run_command
from .errors import LabError

UNMOUNT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class MountEntry:
    target: str
    fstype: str
    options: tuple[str, ...]


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")


def mount_table() -> list[MountEntry]:
    """The host's mounts, as the kernel lists them for this mount namespace."""
    entries = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 4:
            entries.append(MountEntry(_unescape(fields[1]), fields[2], tuple(fields[3].split(","))))
    return entries


def mounted_paths() -> list[str]:
    """Every mount target, plus every overlay lowerdir (so an image in use is seen as such)."""
    paths: list[str] = []
    for entry in mount_table():
        paths.append(entry.target)
        for option in entry.options:
            if option.startswith("lowerdir="):
                paths.extend(_unescape(option.removeprefix("lowerdir=")).split(":"))
    return paths


def mounts_below(path: Path) -> list[str]:
    """Mount targets at or under path, deepest first."""
    root = str(path.resolve())
    found = [e.target for e in mount_table() if e.target == root or e.target.startswith(root + "/")]
    return sorted(set(found), key=len, reverse=True)


def mount_overlay(lower: Path, upper: Path, work: Path, target: Path) -> None:
    """Mount a copy-on-write view of lower at target; writes land in upper."""
    for directory in (upper, work, target):
        directory.mkdir(parents=True, exist_ok=True)
    if str(target.resolve()) in {e.target for e in mount_table()}:
        return
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    run_command(["mount", "-t", "overlay", "overlay", "-o", options, str(target)], timeout=30)


def unmount_below(path: Path) -> None:
    """Unmount everything at or under path, retrying while a dying guest lets go of it."""
    deadline = time.monotonic() + UNMOUNT_TIMEOUT_S
    while True:
        remaining = mounts_below(path)
        if not remaining:
            return
        for target in remaining:
            run_command(["umount", target], timeout=30, check=False)
        if time.monotonic() >= deadline:
            left = mounts_below(path)
            if left:
                raise LabError(f"could not unmount {left} within {UNMOUNT_TIMEOUT_S:.0f}s")
            return
        if mounts_below(path):
            time.sleep(0.5)


def remove_tree(path: Path) -> None:
    """rm -rf that first unmounts anything inside, so it never deletes through a mount."""
    if not path.exists() and not path.is_symlink():
        return
    unmount_below(path)
    shutil.rmtree(path, ignore_errors=False)
