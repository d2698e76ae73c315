"""What goes into the guest image, and the hash that names a build of it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

# Bump when build steps change in a way the package list does not show (image_build.py,
# image_setup.py): the new hash makes every machine rebuild instead of reusing a stale image.
BUILD_SCRIPT_VERSION = 1

GUEST_PACKAGES: tuple[str, ...] = (
    # A booting Debian host that Ansible can reach.
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-venv",
    "python3-packaging",  # Ansible's pip module (the raftnode role)
    "sudo",
    "ca-certificates",
    # Networking and the fault primitives.
    "iproute2",
    "iputils-ping",
    "nftables",
    "procps",
    "curl",
    # The load-balancer pair: HAProxy or nginx (with the Lua module for its health checks).
    "haproxy",
    "nginx",
    "libnginx-mod-http-lua",
    "keepalived",
)


@dataclass(frozen=True)
class ImageRecipe:
    """A Debian release, its package list and the build script version."""

    suite: str = "bookworm"
    variant: str = "minbase"
    packages: tuple[str, ...] = GUEST_PACKAGES
    build_version: int = BUILD_SCRIPT_VERSION

    def as_json(self) -> str:
        return json.dumps(
            {
                "suite": self.suite,
                "variant": self.variant,
                "packages": sorted(self.packages),
                "build_version": self.build_version,
            },
            sort_keys=True,
        )

    def digest(self) -> str:
        """Short content hash: same recipe, same image directory on every clone."""
        return hashlib.sha256(self.as_json().encode()).hexdigest()[:16]
