"""A torn write at the end of a stopped node's write-ahead log, made inside its guest.

``SCRIPT`` runs under the guest's own ``python3`` (no raftnode import: it must work whatever the
node's venv holds). It walks the frames of the newest segment (``length:u32 crc32:u32 payload``,
little-endian, as in ``raftnode/storage/records.py``) and truncates the file part-way into the
last complete frame, as a crash in the middle of that write would leave it. Nothing before that
frame changes, and no valid frame follows the cut: storage must treat it as a torn tail, not as
corruption. It prints one JSON line saying what it did, or why it did nothing.
"""

from __future__ import annotations

import json
from typing import Any

WAL_DIR = "/var/lib/raftnode/wal"  # raftnode_data_dir's default, and RaftStorage's "wal"

SCRIPT = r"""
import json, os, random, re, struct, sys, zlib
wal, seed = sys.argv[1], int(sys.argv[2])
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
if last is None:
    print(json.dumps({"skipped": "no complete frame in " + names[-1], "size": len(data)}))
    sys.exit(0)
start, end = last
cut = random.Random(seed).randrange(start + 1, end)
os.truncate(path, cut)
print(json.dumps({"segment": names[-1], "size": len(data), "frame": [start, end], "cut_to": cut}))
"""


def script_argv(seed: int, wal_dir: str = WAL_DIR) -> list[str]:
    return ["python3", "-c", SCRIPT, wal_dir, str(seed)]


def describe(output: str) -> tuple[bool, str]:
    """(whether a tail was cut, a short note) from the script's JSON line."""
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if not lines:
        raise ValueError(f"torn-tail script printed no JSON: {output.strip()[:300]!r}")
    found: dict[str, Any] = json.loads(lines[-1])
    if "skipped" in found:
        return False, f"skipped: {found['skipped']}"
    start, end = found["frame"]
    cut = found["cut_to"]
    return True, (
        f"{found['segment']} cut from {found['size']} to {cut} bytes "
        f"(last frame {start}-{end}, {end - cut} of its {end - start} bytes lost)"
    )
