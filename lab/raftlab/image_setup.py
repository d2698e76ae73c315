"""Turns a freshly bootstrapped Debian root into a lab guest template (no network needed)."""

from __future__ import annotations

from pathlib import Path

from .commands import run_command

# Units that would reach for the network or do needless work on every boot.
DISABLED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "man-db.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    # Installed for the roles to configure; the roles enable them.
    "haproxy.service",
    "nginx.service",
    "keepalived.service",
)

SSHD_CONFIG = """\
# raftnode lab: root logs in with the lab's key only.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
HostKey /etc/ssh/ssh_host_ed25519_key
"""

JOURNALD_CONFIG = """\
[Journal]
Storage=volatile
RuntimeMaxUse=16M
"""


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()  # never follow a guest symlink out onto the host
    path.write_text(text)
    path.chmod(mode)


def configure_rootfs(rootfs: Path) -> None:
    """Enable networkd, quiet the boot, and strip per-host identity (set at host creation)."""
    existing = [
        unit
        for unit in DISABLED_UNITS
        if any((rootfs / d / unit).exists() for d in ("lib/systemd/system", "etc/systemd/system"))
    ]
    run_command(["chroot", str(rootfs), "systemctl", "enable", "systemd-networkd.service"])
    if existing:
        run_command(["chroot", str(rootfs), "systemctl", "disable", *existing])
    _write(rootfs / "etc/ssh/sshd_config.d/raftlab.conf", SSHD_CONFIG)
    _write(rootfs / "etc/systemd/journald.conf.d/raftlab.conf", JOURNALD_CONFIG)
    # Host keys, machine id and hostname are per host: removed here, written per host.
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    _write(rootfs / "etc/machine-id", "")
    (rootfs / "etc/hostname").unlink(missing_ok=True)
    _write(rootfs / "etc/resolv.conf", "# raftnode lab guests have no DNS: see /etc/hosts\n")
    (rootfs / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
