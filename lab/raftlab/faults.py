"""Network partitions as nftables rules inside guests: a set of blocked peers per guest.

Each guest gets a table `inet raftlab_fault` whose input and output chains drop packets from and
to any address in its `blocked` set. Isolating a guest fills its set with every other lab address
(and multicast, so VRRP adverts stop too); cutting a link puts each end in the other's set; healing
deletes the table. A one-way cut uses the `deaf` set instead: the input chain drops packets from
those addresses, nothing else, so the other side's packets arrive and only the answers are lost
(the sender sees silence, as on a real lossy link, not a local send error). The host side of
the bridge (the controller) is never blocked, so Ansible, tests and `exec` still reach an
isolated guest.
"""

from __future__ import annotations

import json

from .errors import LabError
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
    set deaf {{
        type ipv4_addr
        flags interval
    }}
    chain input {{
        type filter hook input priority -10; policy accept;
        ip saddr @blocked drop
        ip saddr @deaf counter drop
    }}
    chain output {{
        type filter hook output priority -10; policy accept;
        ip daddr @blocked drop
    }}
}}
"""


SETS = ("blocked", "deaf")
DEAF_MARK = "<"
"""Prefix of a `deaf` entry in `blocked()`: packets from that address are dropped on arrival."""


def _has_table(init: ProcessRef) -> bool:
    result = exec_in(init, ["nft", "list", "table", "inet", TABLE], timeout=10, check=False)
    return result.returncode == 0


def _ensure_table(init: ProcessRef) -> None:
    if not _has_table(init):
        exec_in(init, ["nft", "-f", "-"], input_text=RULESET, timeout=10)
        return
    argv = ["nft", "list", "set", "inet", TABLE, "deaf"]
    if exec_in(init, argv, timeout=10, check=False).returncode != 0:
        raise LabError(
            f"the guest's {TABLE} table predates one-way cuts (no 'deaf' set): heal the host first"
        )


def _add(init: ProcessRef, set_name: str, addresses: list[str]) -> None:
    if not addresses:
        return
    _ensure_table(init)
    elements = "{ " + ", ".join(addresses) + " }"
    exec_in(init, ["nft", "add", "element", "inet", TABLE, set_name, elements], timeout=10)


def block(init: ProcessRef, addresses: list[str]) -> None:
    """Drop all traffic between this guest and addresses (idempotent)."""
    _add(init, "blocked", addresses)


def block_from(init: ProcessRef, addresses: list[str]) -> None:
    """Drop packets arriving from addresses; this guest's own packets to them still leave."""
    _add(init, "deaf", addresses)


def unblock(init: ProcessRef, addresses: list[str]) -> None:
    """Let traffic between this guest and addresses flow again, both kinds of rule (missing
    entries are fine)."""
    if not _has_table(init):
        return
    for address in addresses:
        for set_name in SETS:
            argv = ["nft", "delete", "element", "inet", TABLE, set_name, "{ " + address + " }"]
            exec_in(init, argv, timeout=10, check=False)


def clear(init: ProcessRef) -> None:
    """Remove every fault rule from this guest."""
    exec_in(init, ["nft", "delete", "table", "inet", TABLE], timeout=10, check=False)


def blocked(init: ProcessRef) -> list[str]:
    """Addresses this guest currently drops traffic to and from, then those it only stops
    hearing from (marked with DEAF_MARK)."""
    found = _elements(init, "blocked")
    return found + [DEAF_MARK + address for address in _elements(init, "deaf")]


def _elements(init: ProcessRef, set_name: str) -> list[str]:
    argv = ["nft", "-j", "list", "set", "inet", TABLE, set_name]
    result = exec_in(init, argv, timeout=10, check=False)
    if result.returncode != 0:
        return []
    return parse_set_elements(result.stdout)


def parse_set_elements(nft_json: str) -> list[str]:
    """The elements of `nft -j list set` output: addresses, prefixes and ranges as text."""
    found: list[str] = []
    for item in json.loads(nft_json).get("nftables", []):
        for element in item.get("set", {}).get("elem", []):
            if isinstance(element, str):
                found.append(element)
            elif isinstance(element, dict) and "prefix" in element:
                prefix = element["prefix"]
                found.append(f"{prefix['addr']}/{prefix['len']}")
            elif isinstance(element, dict) and "range" in element:
                found.append("-".join(element["range"]))
    return found
