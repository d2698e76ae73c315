"""The on-disk record of one lab: enough for any later process to find and destroy it."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .addressing import LabHost, LabNetwork
from .errors import LabError
from .paths import state_root

_LAB_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")


def validate_lab_name(name: str) -> str:
    if not _LAB_NAME.match(name):
        raise LabError(
            f"lab name {name!r} must be 1-20 characters of a-z, 0-9 and '-', starting with a letter"
        )
    return name


def lab_dir(name: str) -> Path:
    return state_root() / validate_lab_name(name)


def default_bridge(name: str) -> str:
    """br-NAME, or for a long name a prefix plus a hash of it: interface names stop at 15."""
    bridge = f"br-{name}"
    if len(bridge) <= 15:
        return bridge
    digest = hashlib.sha256(name.encode()).hexdigest()[:5]
    return f"br-{name[:6]}-{digest}"


def unique_lab_name(prefix: str) -> str:
    """prefix plus a random suffix, within the name rule; `up` still refuses one in use."""
    suffix = secrets.token_hex(3)
    return validate_lab_name(f"{prefix[: 20 - len(suffix) - 1].rstrip('-')}-{suffix}")


@dataclass
class LabRecord:
    """What `up` created; written before anything is created, so `down` can always undo it."""

    name: str
    subnet: str
    bridge: str
    image_rootfs: str
    hosts: list[LabHost] = field(default_factory=list)

    @property
    def directory(self) -> Path:
        return lab_dir(self.name)

    @property
    def network(self) -> LabNetwork:
        return LabNetwork(self.subnet)

    @property
    def ssh_key(self) -> Path:
        return self.directory / "ssh" / "id_ed25519"

    def host_dir(self, host: str) -> Path:
        return self.directory / "hosts" / host

    def machine_name(self, host: str) -> str:
        """nspawn machine name: unique across labs so host-side veths never collide."""
        return f"{self.name}-{host}"

    def host(self, name: str) -> LabHost:
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join(h.name for h in self.hosts)
        raise LabError(f"lab {self.name!r} has no host {name!r} (hosts: {known})")

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        tmp = self.directory / "lab.json.tmp"
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.rename(self.directory / "lab.json")

    @classmethod
    def load(cls, name: str) -> LabRecord | None:
        path = lab_dir(name) / "lab.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data["hosts"] = [LabHost(**h) for h in data.get("hosts", [])]
        return cls(**data)


def all_lab_names() -> list[str]:
    root = state_root()
    if not root.exists():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "lab.json").exists())
