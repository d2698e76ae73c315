"""Destroying a lab from its state dir alone: works after a crash, and twice in a row."""

from __future__ import annotations

from collections.abc import Callable

from .bridge import delete_bridge, link_exists
from .errors import LabError
from .guest_process import GuestFiles, kill
from .mounts import mounts_below, remove_tree, unmount_below
from .processes import pids_referencing
from .state import LabRecord, lab_dir


def destroy_lab_unlocked(name: str, say: Callable[[str], None] = print) -> bool:
    """Kill guests, unmount disks, delete the bridge and the state dir. False if nothing existed."""
    directory = lab_dir(name)
    record = LabRecord.load(name)
    if not directory.exists() and record is None:
        return False
    hosts_dir = directory / "hosts"
    host_dirs = sorted(hosts_dir.iterdir()) if hosts_dir.exists() else []
    problems: list[str] = []
    for host_dir in host_dirs:
        files = GuestFiles(host_dir)
        try:
            if kill(files):
                say(f"raftlab: killed {host_dir.name}")
        except LabError as exc:
            problems.append(str(exc))
    try:
        unmount_below(directory)
    except LabError as exc:
        problems.append(str(exc))
    if record is not None and link_exists(record.bridge):
        delete_bridge(record.bridge)
        say(f"raftlab: deleted bridge {record.bridge}")
    if problems:
        raise LabError(f"lab {name!r} only partly destroyed:\n" + "\n".join(problems))
    remove_tree(directory)
    return True


def leftovers(name: str, bridge: str) -> list[str]:
    """Anything of the lab still present on the machine (empty after a clean destroy)."""
    directory = lab_dir(name)
    found = []
    if directory.exists():
        found.append(f"state dir {directory}")
    found += [f"mount {m}" for m in mounts_below(directory)]
    if link_exists(bridge):
        found.append(f"bridge {bridge}")
    found += [f"process {pid}" for pid in pids_referencing(directory)]
    return found
