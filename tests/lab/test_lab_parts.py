"""The lab's pure parts: naming, addressing, mirror discovery, inventory and recipe hashing.

These need neither root nor a running lab, so they also run on a developer's laptop.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml

from lab.raftlab import LabError, LabNetwork
from lab.raftlab.addressing import LabHost, pick_free_subnet
from lab.raftlab.host_requirements import HOST_KERNEL_MINIMUMS, ensure_host_limits
from lab.raftlab.image_recipe import ImageRecipe
from lab.raftlab.inventory import molecule_instances, render_inventory
from lab.raftlab.mirror import mirror_from_deb822, mirror_from_one_line
from lab.raftlab.state import LabRecord, default_bridge, unique_lab_name, validate_lab_name


def test_addresses_follow_host_names() -> None:
    network = LabNetwork("10.77.0.0/24")
    hosts = network.hosts(["n1", "n2", "n3", "lb1", "lb2", "client"])
    assert [(h.name, h.group, h.address) for h in hosts] == [
        ("n1", "raft", "10.77.0.11"),
        ("n2", "raft", "10.77.0.12"),
        ("n3", "raft", "10.77.0.13"),
        ("lb1", "lb", "10.77.0.21"),
        ("lb2", "lb", "10.77.0.22"),
        ("client", "client", "10.77.0.31"),
    ]
    assert network.vip == "10.77.0.100"
    assert network.controller_address == "10.77.0.1"
    assert LabNetwork("10.78.4.0/24").host("lb2").address == "10.78.4.22"


@pytest.mark.parametrize("name", ["web1", "n0", "n10", "lb", "N1", "client0"])
def test_unknown_host_names_are_refused(name: str) -> None:
    with pytest.raises(LabError, match="naming rule"):
        LabNetwork().host(name)


def test_two_hosts_on_one_address_are_refused() -> None:
    with pytest.raises(LabError, match="share"):
        LabNetwork().hosts(["client", "client1"])


@pytest.mark.parametrize("subnet", ["10.77.0.0/26", "8.8.8.0/24", "10.77.0.1/24", "fd00::/64"])
def test_unsuitable_subnets_are_refused(subnet: str) -> None:
    with pytest.raises(LabError):
        LabNetwork(subnet)


def test_lab_names_fit_interface_names() -> None:
    assert default_bridge("raftlab") == "br-raftlab"
    assert len(default_bridge("a-very-long-lab-name")) == 15
    # Two long names that share a prefix (lb-failover-3f2a1c, lb-failover-9e0b7d) get two bridges.
    assert default_bridge("lb-failover-3f2a1c") != default_bridge("lb-failover-9e0b7d")
    names = {unique_lab_name("lb-failover") for _ in range(20)}
    assert len(names) == 20
    assert all(n.startswith("lb-failover-") and validate_lab_name(n) for n in names)
    assert validate_lab_name(unique_lab_name("a-prefix-far-too-long-for-the-rule"))
    for bad in ("", "Upper", "1abc", "with space", "x" * 21):
        with pytest.raises(LabError):
            validate_lab_name(bad)


def test_auto_subnets_avoid_the_default_and_every_subnet_in_use() -> None:
    def net(cidr: str) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Interface(cidr).network

    assert pick_free_subnet([]) == "10.77.1.0/24", "10.77.0.0/24 stays free for `make lab`"
    taken = [net("10.77.1.1/24"), net("10.77.2.0/23"), net("127.0.0.1/8")]
    assert pick_free_subnet(taken) == "10.77.4.0/24"
    with pytest.raises(LabError, match="in use"):
        pick_free_subnet([net("10.77.0.0/16")])


def test_mirror_comes_from_the_machine_configuration() -> None:
    deb822 = """\
Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""
    assert mirror_from_deb822(deb822) == "http://mirror.example/debian"
    security_first = "\n\n".join(reversed(deb822.split("\n\n")))
    assert mirror_from_deb822(security_first) == "http://mirror.example/debian"
    one_line = (
        "# comment\n"
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb [signed-by=/usr/share/keyrings/k.gpg] http://mirror.example/debian bookworm main\n"
    )
    assert mirror_from_one_line(one_line) == "http://mirror.example/debian"
    assert mirror_from_deb822("") is None


def test_recipe_hash_changes_with_packages_and_build_version() -> None:
    base = ImageRecipe()
    assert base.digest() == ImageRecipe().digest()
    assert ImageRecipe(packages=(*base.packages, "less")).digest() != base.digest()
    assert ImageRecipe(build_version=base.build_version + 1).digest() != base.digest()
    reordered = ImageRecipe(packages=tuple(reversed(base.packages)))
    assert reordered.digest() == base.digest()


def _record() -> LabRecord:
    network = LabNetwork("10.77.0.0/24")
    hosts: list[LabHost] = network.hosts(["n1", "lb1"])
    return LabRecord("smoke", network.subnet, "br-smoke", "/images/x/rootfs", hosts)


def test_inventory_groups_hosts_and_connects_as_root_over_ssh() -> None:
    record = _record()
    text = render_inventory(record)
    assert '    raft:\n      hosts:\n        n1:\n          ansible_host: "10.77.0.11"' in text
    assert "    lb:\n      hosts:\n        lb1:" in text
    assert 'ansible_user: "root"' in text
    assert f'ansible_ssh_private_key_file: "{record.ssh_key}"' in text
    assert "StrictHostKeyChecking=no" in text
    assert 'ansible_python_interpreter: "/usr/bin/python3"' in text
    assert 'raftlab_vip: "10.77.0.100"' in text
    assert "client:" not in text
    parsed = yaml.safe_load(text)
    n1 = parsed["all"]["children"]["raft"]["hosts"]["n1"]
    assert n1["ansible_host"] == "10.77.0.11" and n1["ansible_port"] == 22
    assert set(parsed["all"]["children"]) == {"raft", "lb"}


def test_molecule_instance_config_lists_every_host() -> None:
    record = _record()
    assert molecule_instances(record) == [
        {
            "instance": "n1",
            "address": "10.77.0.11",
            "user": "root",
            "port": 22,
            "identity_file": str(record.ssh_key),
        },
        {
            "instance": "lb1",
            "address": "10.77.0.21",
            "user": "root",
            "port": 22,
            "identity_file": str(record.ssh_key),
        },
    ]


def test_host_limits_are_raised_to_their_minimum_and_never_lowered(tmp_path: Path) -> None:
    (tmp_path / "fs/inotify").mkdir(parents=True)
    low, high = tmp_path / "fs/inotify/max_user_instances", tmp_path / "fs/inotify/max_user_watches"
    low.write_text("128\n")
    high.write_text(str(HOST_KERNEL_MINIMUMS["fs/inotify/max_user_watches"] * 2))
    changed = ensure_host_limits(tmp_path)
    assert changed == ["fs.inotify.max_user_instances 128 -> 8192"]
    assert low.read_text() == "8192"
    assert int(high.read_text()) == HOST_KERNEL_MINIMUMS["fs/inotify/max_user_watches"] * 2
    assert ensure_host_limits(tmp_path) == []  # already high enough: nothing to do
