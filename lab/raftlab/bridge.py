"""The lab's host-side bridge: one private subnet, no forwarding off it, no NAT."""

from __future__ import annotations

import json
from pathlib import Path

from .commands import run_command


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def ports_of(bridge: str) -> list[str]:
    """Interfaces attached to bridge (the guests' host-side veths)."""
    brif = Path(f"/sys/class/net/{bridge}/brif")
    return sorted(p.name for p in brif.iterdir()) if brif.exists() else []


def addresses_in_use() -> list[str]:
    """Every IPv4 address/prefix configured on this machine, for subnet clash checks."""
    out = run_command(["ip", "-j", "-4", "addr", "show"], timeout=10).stdout
    found = []
    for link in json.loads(out or "[]"):
        for info in link.get("addr_info", []):
            found.append(f"{info['local']}/{info['prefixlen']}")
    return found


def _sysctl(key: str, value: str) -> None:
    path = Path("/proc/sys") / key.replace(".", "/")
    if path.exists():
        path.write_text(value)


def create_bridge(name: str, address: str, prefixlen: int) -> None:
    """Create name with address on it; packets arriving on it are never routed elsewhere."""
    if not link_exists(name):
        run_command(["ip", "link", "add", name, "type", "bridge"], timeout=10)
    # Guests reach only each other and this host: no forwarding from the bridge, no IPv6 chatter.
    _sysctl(f"net.ipv4.conf.{name}.forwarding", "0")
    _sysctl(f"net.ipv6.conf.{name}.disable_ipv6", "1")
    current = run_command(["ip", "-4", "-o", "addr", "show", "dev", name], timeout=10).stdout
    if f" {address}/{prefixlen} " not in current:
        run_command(["ip", "addr", "add", f"{address}/{prefixlen}", "dev", name], timeout=10)
    run_command(["ip", "link", "set", name, "up"], timeout=10)


def delete_bridge(name: str) -> None:
    """Remove the bridge and any veth still attached to it (idempotent)."""
    for port in ports_of(name):
        run_command(["ip", "link", "delete", port], timeout=10, check=False)
    if link_exists(name):
        run_command(["ip", "link", "delete", name, "type", "bridge"], timeout=10)
