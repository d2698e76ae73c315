"""Network partitions as nftables rules inside guests: a set of blocked peers per guest.

Each guest gets a table `inet raftlab_fault` whose input and output chains drop packets from and
to any address in its `blocked` set. Isolating a guest fills its set with every other lab address
(and multicast, so VRRP adverts stop too); cutting a link puts each end in the other's set; healing
deletes the table. The host side of the bridge (the controller) is never blocked, so Ansible,
tests and `exec` still reach an isolated guest.
"""

from __future__ import annotations

import json

from .guest_exec import exec_in
from .processes import ProcessRef

TABLE = "raftlab_fault"
MULTICAST = "224.0.0.0/4"

RULESET = f"""\
table inet {TABLE} {{
    set blocked {{
        type ipv4_addr
        flags interval
    }}
    chain input {{
        type filter hook input priority -10; policy accept;
        ip saddr @blocked drop
    }}
    chain output {{
        type filter hook output priority -10; policy accept;
        ip daddr @blocked drop
    }}
}}
"""


def _has_table(init: ProcessRef) -> bool:
    result = exec_in(init, ["nft", "list", "table", "inet", TABLE], timeout=10, check=False)
    return result.returncode == 0


def block(init: ProcessRef, addresses: list[str]) -> None:
    """Drop all traffic between this guest and addresses (idempotent)."""
    if not addresses:
        return
    if not _has_table(init):
        exec_in(init, ["nft", "-f", "-"], input_text=RULESET, timeout=10)
    elements = "{ " + ", ".join(addresses) + " }"
    exec_in(init, ["nft", "add", "element", "inet", TABLE, "blocked", elements], timeout=10)


def unblock(init: ProcessRef, addresses: list[str]) -> None:
    """Let traffic between this guest and addresses flow again (missing entries are fine)."""
    if not _has_table(init):
        return
    for address in addresses:
        argv = ["nft", "delete", "element", "inet", TABLE, "blocked", "{ " + address + " }"]
        exec_in(init, argv, timeout=10, check=False)


def clear(init: ProcessRef) -> None:
    """Remove every fault rule from this guest."""
    exec_in(init, ["nft", "delete", "table", "inet", TABLE], timeout=10, check=False)


def blocked(init: ProcessRef) -> list[str]:
    """Addresses this guest currently drops traffic to and from."""
    argv = ["nft", "-j", "list", "set", "inet", TABLE, "blocked"]
    result = exec_in(init, argv, timeout=10, check=False)
    if result.returncode != 0:
        return []
    found: list[str] = []
    for item in json.loads(result.stdout).get("nftables", []):
        for element in item.get("set", {}).get("elem", []):
            if isinstance(element, str):
                found.append(element)
            elif isinstance(element, dict) and "prefix" in element:
                prefix = element["prefix"]
                found.append(f"{prefix['addr']}/{prefix['len']}")
            elif isinstance(element, dict) and "range" in element:
                found.append("-".join(element["range"]))
    return found
