"""Lab host names, their roles, and the addresses derived from them (deterministically)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .errors import LabError

DEFAULT_SUBNET = "10.77.0.0/24"  # `make lab`; what the docs' example addresses assume
# `up --subnet auto` takes the first /24 of this pool that no lab and no interface on this
# machine uses. The pool leaves out DEFAULT_SUBNET, so test labs never take the address
# a developer's `make lab` is about to use.
AUTO_SUBNET = "auto"
SUBNET_POOL = "10.77.0.0/16"
CONTROLLER_OFFSET = 1  # the host side of the bridge
VIP_OFFSET = 100  # reserved for keepalived's virtual address

# prefix -> (Ansible group, address offset of member number 0)
ROLE_PREFIXES: dict[str, tuple[str, int]] = {
    "n": ("raft", 10),  # n1 -> .11 ... n9 -> .19
    "lb": ("lb", 20),  # lb1 -> .21 ... lb9 -> .29
    "client": ("client", 30),  # client / client1 -> .31 ... client9 -> .39
}

_NAME = re.compile(r"^(?P<prefix>n|lb|client)(?P<number>[1-9]?)$")


@dataclass(frozen=True)
class LabHost:
    """A guest: its short name (= hostname), Ansible group and address on the lab bridge."""

    name: str
    group: str
    address: str


def parse_host_name(name: str) -> tuple[str, int]:
    """(group, offset) for a host name; LabError with the naming rule otherwise."""
    match = _NAME.match(name)
    if not match or (match["prefix"] != "client" and not match["number"]):
        raise LabError(
            f"host name {name!r} does not follow the lab's naming rule: n1..n9 (raft), "
            "lb1..lb9 (load balancers), client or client1..client9"
        )
    group, base = ROLE_PREFIXES[match["prefix"]]
    return group, base + int(match["number"] or "1")


@dataclass(frozen=True)
class LabNetwork:
    """The private subnet of one lab: controller, guests and the reserved VIP live in it."""

    subnet: str = DEFAULT_SUBNET

    def __post_init__(self) -> None:
        network = self.network
        if network.version != 4 or network.prefixlen > 25:
            raise LabError(f"lab subnet {self.subnet} must be IPv4 with at least 128 addresses")
        if not network.is_private:
            raise LabError(f"lab subnet {self.subnet} must be a private range")

    @property
    def network(self) -> ipaddress.IPv4Network:
        try:
            return ipaddress.IPv4Network(self.subnet, strict=True)
        except ValueError as exc:
            raise LabError(f"invalid lab subnet {self.subnet!r}: {exc}") from exc

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen

    def at(self, offset: int) -> str:
        return str(self.network.network_address + offset)

    @property
    def controller_address(self) -> str:
        return self.at(CONTROLLER_OFFSET)

    @property
    def vip(self) -> str:
        return self.at(VIP_OFFSET)

    def host(self, name: str) -> LabHost:
        group, offset = parse_host_name(name)
        return LabHost(name=name, group=group, address=self.at(offset))

    def hosts(self, names: list[str]) -> list[LabHost]:
        """Hosts for names, refusing duplicates (client and client1 share an address)."""
        hosts = [self.host(name) for name in names]
        seen: dict[str, str] = {}
        for host in hosts:
            if host.address in seen:
                raise LabError(f"hosts {seen[host.address]} and {host.name} share {host.address}")
            seen[host.address] = host.name
        return hosts


def pick_free_subnet(taken: list[ipaddress.IPv4Network], pool: str = SUBNET_POOL) -> str:
    """The first /24 of pool (other than DEFAULT_SUBNET) that overlaps nothing in taken."""
    reserved = ipaddress.IPv4Network(DEFAULT_SUBNET)
    for candidate in ipaddress.IPv4Network(pool).subnets(new_prefix=24):
        if candidate.overlaps(reserved) or any(candidate.overlaps(t) for t in taken):
            continue
        return str(candidate)
    raise LabError(f"every /24 of the lab pool {pool} is in use: `list` the labs and `down` some")
