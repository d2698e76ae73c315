"""Damage at the end of a stopped node's write-ahead log, made inside its guest.

``SCRIPT`` runs under the guest's own ``python3`` (no raftnode import: it must work whatever the
node's venv holds). It walks the frames of the newest segment (``length:u32 crc32:u32 payload``,
little-endian, as in ``raftnode/storage/records.py``) and then, by mode:

- ``append``: a torn write. The first bytes of a copy of the last frame are appended after it,
  as a crash in the middle of writing the next batch would leave them. That batch was never
  fsynced, so never acknowledged: storage must drop the partial frame, start, and catch up.
- ``cut``: the file is cut part-way into the last complete frame. That frame was fsynced before
  the node acknowledged it, so this is a disk losing acknowledged data, outside Raft's model: the
  leader's match index for the node already covers the lost entries, and a rejection below the
  match index is taken as stale (``Progress.maybe_decrease_to``, as in etcd-raft), so the node
  stays behind until the next leader change. Seen on the lab (2026-12-04, 60 s run): the leader
  listed the follower reachable at match 712, lag 1529, 60 s after its restart.

Nothing before the damage changes, and no valid frame follows it. The script prints one JSON line
saying what it did, or why it did nothing.
"""

from __future__ import annotations

import json
from typing import Any, Literal

WAL_DIR = "/var/lib/raftnode/wal"  # raftnode_data_dir's default, and RaftStorage's "wal"
Mode = Literal["append", "cut"]

SCRIPT = r"""
import json, os, random, re, struct, sys, zlib
wal, mode, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
names = sorted(n for n in os.listdir(wal) if re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]{16}\.wal", n))
if not names:
    print(json.dumps({"skipped": "no WAL segment in " + wal}))
    sys.exit(0)
path = os.path.join(wal, names[-1])
with open(path, "rb") as f:
    data = f.read()
offset, last = 0, None
while offset + 8 <= len(data):
    length, crc = struct.unpack_from("<II", data, offset)
    end = offset + 8 + length
    if length == 0 or end > len(data) or zlib.crc32(data[offset + 8 : end]) != crc:
        break
    last, offset = (offset, end), end
if last is None or offset != len(data):
    why = "no complete frame" if last is None else "already damaged after byte %d" % offset
    print(json.dumps({"skipped": why + " in " + names[-1], "size": len(data)}))
    sys.exit(0)
start, end = last
point = random.Random(seed).randrange(start + 1, end)
if mode == "cut":
    os.truncate(path, point)
else:
    with open(path, "ab") as f:
        f.write(data[start:point])
        f.flush()
        os.fsync(f.fileno())
found = {"mode": mode, "segment": names[-1], "size": len(data), "frame": [start, end]}
print(json.dumps(dict(found, torn_bytes=point - start)))
"""


def script_argv(mode: Mode, seed: int, wal_dir: str = WAL_DIR) -> list[str]:
    return ["python3", "-c", SCRIPT, wal_dir, mode, str(seed)]


def describe(output: str) -> tuple[bool, str]:
    """(whether the log was damaged, a short note) from the script's JSON line."""
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if not lines:
        raise ValueError(f"torn-tail script printed no JSON: {output.strip()[:300]!r}")
    found: dict[str, Any] = json.loads(lines[-1])
    if "skipped" in found:
        return False, f"skipped: {found['skipped']}"
    start, end = found["frame"]
    kept = found["torn_bytes"]
    if found["mode"] == "cut":
        return True, (
            f"{found['segment']} cut to {start + kept} bytes: last frame {start}-{end} "
            f"lost {end - start - kept} of its {end - start} bytes"
        )
    return True, (
        f"{found['segment']} ({found['size']} bytes): a torn frame of {kept} bytes appended "
        f"(the first {kept} of a copy of the last frame, {start}-{end})"
    )
