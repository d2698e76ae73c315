"""``full-disk``: a node's data dir on a small filesystem that fills, then space coming back.

No host disk is ever filled: the data dir moves onto a size-limited tmpfs inside the guest
(``SMALL_DISK``), sized to twice what the data uses (the node catches up after the move, maybe
with a snapshot from the leader as large as its store, written beside the old one) plus the
node's own reserve (``limits.min_free_disk_bytes``) plus ``SLACK_BYTES``, and never over
``MAX_BYTES``; a filler file then takes all of its free space. Steps, in the guest
(``lab.raftlab exec``):

1. raftnode stopped, the tmpfs mounted, the data dir copied onto it and bind-mounted over the
   data dir, raftnode started and waited for (it serves as a replica or as the leader);
2. half the time leadership is asked for it, so clients write through a full leader (refused
   with 507 ``disk_full``: nothing was written) and not only replicate onto a full follower
   (a WAL append fails: the node must stop cleanly, never acknowledge);
3. the filler takes every free byte; the hold;
4. the heal removes the filler, starts the unit again if it stopped (``reset-failed``: a crash
   loop may have hit the start limit) and waits until the node serves; then raftnode is
   stopped, the data copied back to its own disk, the tmpfs unmounted, raftnode started and
   waited for as a caught-up replica (or the leader, if it won an election on the way).

A run whose checks pass shows that no acknowledged write was lost and nothing was corrupt.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .lab_error import LabError

if TYPE_CHECKING:
    from .nemesis import Nemesis

DATA_DIR = "/var/lib/raftnode"
SMALL_DISK = "/mnt/chaos-full-disk"
CONFIG = "/etc/raftnode/raftnode.yaml"
SLACK_BYTES = 64 << 20
"""Room above the reserve: once the filler is gone the node takes writes again."""
MAX_BYTES = 2 << 30
"""The tmpfs is never bigger (it takes memory once filled): a larger data dir refuses the fault."""
SERVE_TIMEOUT = 60.0
FILL_MARGIN = 4 << 20

MOVE_TO_SMALL_DISK = f"""set -e
if mountpoint -q {SMALL_DISK}; then echo "{SMALL_DISK} is already mounted" >&2; exit 3; fi
reserve=$(sed -n 's/^ *min_free_disk_bytes: *\\([0-9]*\\).*/\\1/p' {CONFIG} | head -n 1)
reserve=${{reserve:-0}}
used=$(du -sb {DATA_DIR} | cut -f1)
size=$(( (2 * used + reserve + {SLACK_BYTES} + 4095) / 4096 * 4096 ))
if [ "$size" -gt {MAX_BYTES} ]; then
  echo "a tmpfs of $size bytes would be over {MAX_BYTES}: data dir too big" >&2; exit 4
fi
systemctl stop raftnode
mkdir -p {SMALL_DISK}
mount -t tmpfs -o size=$size,mode=0755 chaos-full-disk {SMALL_DISK}
cp -a {DATA_DIR} {SMALL_DISK}/data
mount --bind {SMALL_DISK}/data {DATA_DIR}
systemctl reset-failed raftnode || true
systemctl start raftnode
echo "{{\\"size\\": $size, \\"used\\": $used, \\"reserve\\": $reserve}}"
"""
"""Stop, copy the data dir onto a small tmpfs, bind it over the data dir, start."""

FILL = f"""set -e
avail=$(df -B1 --output=avail {SMALL_DISK} | tail -n 1 | tr -d ' ')
if [ "$avail" -gt {FILL_MARGIN} ]; then
  fallocate -l $((avail - {FILL_MARGIN})) {SMALL_DISK}/filler
fi
dd if=/dev/zero of={SMALL_DISK}/filler-tail bs=4096 2>/dev/null || true
left=$(df -B1 --output=avail {SMALL_DISK} | tail -n 1 | tr -d ' ')
echo "{{\\"filled\\": $avail, \\"left\\": $left}}"
"""
"""Filler files over every free byte of the small filesystem: one allocated at once up to a
margin (the node may write meanwhile: an exact size can fail), the rest written until ENOSPC."""

EMPTY = f"""set -e
rm -f {SMALL_DISK}/filler {SMALL_DISK}/filler-tail
systemctl reset-failed raftnode || true
systemctl start raftnode
"""
"""Space back, and the unit running again if the full disk stopped it."""

RESTORE_DISK = f"""set -e
rm -f {SMALL_DISK}/filler {SMALL_DISK}/filler-tail
if mountpoint -q {DATA_DIR}; then
  systemctl stop raftnode
  sync
  umount {DATA_DIR}
  find {DATA_DIR} -mindepth 1 -delete
  cp -a {SMALL_DISK}/data/. {DATA_DIR}/
  sync
fi
if mountpoint -q {SMALL_DISK}; then umount {SMALL_DISK}; fi
rmdir {SMALL_DISK} 2>/dev/null || true
systemctl reset-failed raftnode || true
systemctl start raftnode
"""
"""Data back on the node's own disk (only if it is still on the tmpfs), tmpfs gone, started."""


def last_json(out: str, what: str) -> dict[str, int]:
    """The JSON object a script printed last; LabError naming ``what`` when there is none."""
    for line in reversed(out.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and all(isinstance(v, int) for v in value.values()):
            return value
    raise LabError(f"full-disk: {what} printed no figures: {out[-500:]!r}")


async def full_disk(n: Nemesis) -> None:
    """The fault and its heal (see the module docstring), both recorded."""
    target = n.pick(n.hosts.raft)
    n.busy.add(target)
    try:
        t0 = n.recorder.clock()
        n.small_disks.add(target)
        moved = last_json(
            await n.exec(target, "sh", "-c", MOVE_TO_SMALL_DISK, timeout=90.0), "move"
        )
        if await n.wait_serving(target, SERVE_TIMEOUT) is None:
            raise LabError(
                f"full-disk: {target} does not serve {SERVE_TIMEOUT:.0f} s after its data dir "
                f"moved to a tmpfs; {await n.evidence(target)}"
            )
        lead = ""
        if n.rng.random() < 0.5:
            answer = await n.admin(
                target, "POST", "/admin/v1/leader/transfer", {"to": int(target[1:])}, timeout=20.0
            )
            lead = f"; leadership asked for it: {answer.status or answer.error}"
        filled = last_json(await n.exec(target, "sh", "-c", FILL), "fill")
        note = (
            f"data dir ({moved['used']} bytes) on a {moved['size']}-byte tmpfs, filled "
            f"({filled['filled']} bytes taken, {filled['left']} left){lead}"
        )
        n._record("fault", "full-disk", target, t0, note)
        await n.sleep_hold()
        t0 = n.recorder.clock()
        await n.exec(target, "sh", "-c", EMPTY)
        back = await n.wait_serving(target, SERVE_TIMEOUT)
        if back is None:
            raise LabError(
                f"full-disk: {target} does not serve {SERVE_TIMEOUT:.0f} s after space came "
                f"back; {await n.evidence(target)}"
            )
        await n.exec(target, "sh", "-c", RESTORE_DISK, timeout=120.0)
        n.small_disks.discard(target)
        caught = await n.wait_serving(target, SERVE_TIMEOUT)
        if caught is None:
            raise LabError(
                f"full-disk: {target} does not serve {SERVE_TIMEOUT:.0f} s after its "
                f"data went back to its disk; {await n.evidence(target)}"
            )
        note = (
            f"space back: serving after {back:.1f} s; back on its disk, caught up in {caught:.1f} s"
        )
        n._record("heal", "full-disk", target, t0, note)
    finally:
        n.busy.discard(target)
