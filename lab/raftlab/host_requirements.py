"""What the machine running the lab must offer: Linux, root, a few Debian packages, and kernel
limits high enough for many guest systemds."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from .commands import run_streaming
from .errors import LabError

# Host command -> Debian package that provides it.
HOST_TOOLS: dict[str, str] = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "ip": "iproute2",
    "nsenter": "util-linux",
}

APT_TIMEOUT_S = 900.0

# Every guest's systemd, journald and logind take inotify instances from root's budget. The
# kernel's default of 128 instances is used up by about three labs of five to seven hosts (a
# `make lab` beside `make test`), and a guest that finds none left dies at boot. Raised, never
# lowered, when a lab comes up.
HOST_KERNEL_MINIMUMS: dict[str, int] = {
    "fs/inotify/max_user_instances": 8192,
    "fs/inotify/max_user_watches": 524288,
}


def require_root() -> None:
    """Refuse to go on unless this is Linux and we are root, saying why."""
    if not sys.platform.startswith("linux"):
        raise LabError("the lab needs Linux (systemd-nspawn, network namespaces, overlayfs)")
    if os.geteuid() != 0:
        raise LabError(
            "the lab needs root: it creates a network bridge, mounts overlay filesystems and boots "
            "systemd-nspawn guests. Run it as root, e.g. `sudo python3 -m lab.raftlab ...` "
            "or `sudo make lab-up`."
        )


def missing_packages() -> list[str]:
    """Debian packages whose commands are absent on this machine."""
    return sorted({pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None})


def ensure_host_tools() -> None:
    """Install the Debian packages the lab drives (apt-get), if any command is missing."""
    packages = missing_packages()
    if not packages:
        return
    if shutil.which("apt-get") is None:
        raise LabError(f"missing host packages {packages} and no apt-get to install them")
    print(f"raftlab: installing host packages: {' '.join(packages)}", flush=True)
    env_prefix = ["env", "DEBIAN_FRONTEND=noninteractive"]
    run_streaming([*env_prefix, "apt-get", "update", "-qq"], timeout=APT_TIMEOUT_S)
    run_streaming(
        [*env_prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        timeout=APT_TIMEOUT_S,
    )
    still_missing = missing_packages()
    if still_missing:
        raise LabError(f"host packages still missing after apt-get: {still_missing}")


def ensure_host_limits(proc_sys: Path = Path("/proc/sys")) -> list[str]:
    """Raise the kernel limits in HOST_KERNEL_MINIMUMS that are below their minimum; the
    settings changed, as ``key old -> new``."""
    changed = []
    for key, minimum in HOST_KERNEL_MINIMUMS.items():
        path = proc_sys / key
        if not path.exists():
            continue
        current = int(path.read_text().split()[0])
        if current < minimum:
            path.write_text(str(minimum))
            changed.append(f"{key.replace('/', '.')} {current} -> {minimum}")
    return changed
