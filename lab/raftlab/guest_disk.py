"""A guest's disk: a copy-on-write overlay of the image, plus the files that make it one host."""

from __future__ import annotations

import uuid
from pathlib import Path

from .addressing import LabHost, LabNetwork
from .commands import run_command
from .mounts import mount_overlay

NETWORK_FILE = "etc/systemd/network/10-host0.network"  # sorts before 80-container-host0


def root_of(host_dir: Path) -> Path:
    return host_dir / "root"


def _write(root: Path, relative: str, text: str, mode: int = 0o644) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()  # never follow a guest symlink out onto the host
    path.write_text(text)
    path.chmod(mode)


def network_file(host: LabHost, network: LabNetwork) -> str:
    # No Gateway= and no DHCP: the guest routes only its own subnet.
    return (
        "[Match]\nName=host0\n\n"
        f"[Network]\nAddress={host.address}/{network.prefixlen}\n"
        "LinkLocalAddressing=no\nIPv6AcceptRA=no\nDHCP=no\n"
    )


def hosts_file(hosts: list[LabHost], network: LabNetwork) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", ""]
    lines += [f"{network.controller_address}\tcontroller"]
    lines += [f"{h.address}\t{h.name}" for h in hosts]
    lines += [f"{network.vip}\tvip"]
    return "\n".join(lines) + "\n"


def provision_disk(
    host: LabHost,
    hosts: list[LabHost],
    network: LabNetwork,
    image_rootfs: Path,
    host_dir: Path,
    public_key: str,
) -> Path:
    """Mount the overlay and write hostname, address, /etc/hosts, identity and SSH access."""
    root = root_of(host_dir)
    mount_overlay(image_rootfs, host_dir / "upper", host_dir / "work", root)
    _write(root, "etc/hostname", f"{host.name}\n")
    _write(root, "etc/hosts", hosts_file(hosts, network))
    _write(root, NETWORK_FILE, network_file(host, network))
    machine_id = root / "etc/machine-id"
    if not machine_id.read_text().strip():
        _write(root, "etc/machine-id", uuid.uuid4().hex + "\n", 0o444)
    (root / "root/.ssh").mkdir(mode=0o700, parents=True, exist_ok=True)
    _write(root, "root/.ssh/authorized_keys", public_key.strip() + "\n", 0o600)
    host_key = root / "etc/ssh/ssh_host_ed25519_key"
    if not host_key.exists():
        run_command(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host.name, "-f", str(host_key)],
            timeout=30,
        )
    return root
