"""Builds the guest image with debootstrap, cached by recipe hash under the cache dir."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .commands import run_command, run_streaming
from .errors import LabError
from .image_recipe import ImageRecipe
from .image_setup import configure_rootfs
from .locking import exclusive_lock
from .mirror import configured_mirror
from .mounts import mounted_paths, remove_tree, unmount_below
from .paths import cache_root

DEBOOTSTRAP_TIMEOUT_S = 1200.0
LOCK_TIMEOUT_S = 1500.0
COMPLETE_MARKER = "complete"


@dataclass(frozen=True)
class BuiltImage:
    """A ready image: its root directory, and how it was obtained."""

    rootfs: Path
    digest: str
    seconds: float
    cached: bool


def images_dir() -> Path:
    return cache_root() / "images"


def image_dir(recipe: ImageRecipe) -> Path:
    return images_dir() / recipe.digest()


def cached_image(recipe: ImageRecipe) -> Path | None:
    """The rootfs of a complete build of this recipe, if one exists."""
    directory = image_dir(recipe)
    if (directory / COMPLETE_MARKER).exists():
        return directory / "rootfs"
    return None


def ensure_image(recipe: ImageRecipe, *, rebuild: bool = False) -> BuiltImage:
    """Reuse the cached image for this recipe, or build it (printing progress)."""
    started = time.monotonic()
    with exclusive_lock(cache_root() / "image.lock", timeout=LOCK_TIMEOUT_S, what="image cache"):
        found = cached_image(recipe)
        if found is not None and not rebuild:
            return BuiltImage(found, recipe.digest(), time.monotonic() - started, cached=True)
        if found is not None:
            _remove_image_dir(image_dir(recipe))
        rootfs = _build(recipe)
        _prune_other_images(keep=recipe.digest())
    return BuiltImage(rootfs, recipe.digest(), time.monotonic() - started, cached=False)


def _build(recipe: ImageRecipe) -> Path:
    final = image_dir(recipe)
    work = final.with_name(final.name + ".building")
    if work.exists():
        print(f"raftlab: removing an unfinished build at {work}", flush=True)
        remove_tree(work)
    work.mkdir(parents=True)
    rootfs = work / "rootfs"
    mirror = configured_mirror()
    print(
        f"raftlab: building image {recipe.digest()} ({recipe.suite}, {len(recipe.packages)} "
        f"packages) from {mirror} into {final}",
        flush=True,
    )
    step = time.monotonic()
    try:
        _debootstrap(recipe, rootfs, mirror)
    finally:
        unmount_below(work)  # debootstrap leaves proc/sys mounted when it fails
    print(f"raftlab: debootstrap done in {time.monotonic() - step:.0f}s; configuring", flush=True)
    configure_rootfs(rootfs)
    (work / "recipe.json").write_text(recipe.as_json() + "\n")
    (work / COMPLETE_MARKER).write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")
    work.rename(final)
    size = run_command(["du", "-sh", str(final / "rootfs")], timeout=120).stdout.split()[0]
    print(f"raftlab: image {recipe.digest()} ready ({size})", flush=True)
    return final / "rootfs"


def _debootstrap(recipe: ImageRecipe, rootfs: Path, mirror: str) -> None:
    run_streaming(
        [
            "debootstrap",
            f"--variant={recipe.variant}",
            f"--include={','.join(recipe.packages)}",
            recipe.suite,
            str(rootfs),
            mirror,
        ],
        timeout=DEBOOTSTRAP_TIMEOUT_S,
        log_prefix="  debootstrap: ",
    )


def _remove_image_dir(directory: Path) -> None:
    rootfs = str(directory / "rootfs")
    if any(path.startswith(rootfs) for path in mounted_paths()):
        raise LabError(f"image {directory} is in use by a running lab; run `down` first")
    remove_tree(directory)


def _prune_other_images(*, keep: str) -> None:
    """Drop images of older recipes unless a lab still mounts them."""
    for directory in images_dir().iterdir():
        if directory.name == keep or not directory.is_dir():
            continue
        try:
            _remove_image_dir(directory)
            print(f"raftlab: removed outdated image {directory.name}", flush=True)
        except LabError as exc:
            print(f"raftlab: keeping {directory.name}: {exc}", flush=True)
