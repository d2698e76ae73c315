"""The lab end to end: five systemd hosts, Ansible over SSH, every fault primitive, clean teardown.

Needs root on Linux (it creates a bridge, overlay mounts and systemd-nspawn guests); `make test-lab`
installs Ansible first. Asks the lab for a unique name and a free subnet, as Molecule does, so
a developer's `make lab` (or another test run) keeps running beside it; one test brings up a
second lab next to this one and checks that tearing it down leaves this one intact.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.raftlab import Lab, LabError, destroy_lab, leftovers, up_lab
from lab.raftlab.bridge import link_exists, ports_of
from lab.raftlab.faults import DEAF_MARK
from lab.raftlab.processes import is_alive, read_ref

LAB_PREFIX = "pytest"
SUBNET = os.environ.get("RAFTLAB_TEST_SUBNET", "auto")
HOSTS = ["n1", "n2", "n3", "lb1", "lb2"]

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the lab needs Linux"),
    pytest.mark.skipif(
        sys.platform.startswith("linux") and os.geteuid() != 0,
        reason="the lab needs root (bridge, overlay mounts, systemd-nspawn): run as root",
    ),
]


class LabUnderTest:
    """The lab plus what the teardown check needs to remember about it."""

    def __init__(self, lab: Lab, veths: list[str]) -> None:
        self.lab = lab
        self.veths = veths
        self.bridge = lab.record.bridge
        self.state_dir = lab.record.directory


@pytest.fixture(scope="module")
def running(pytestconfig: pytest.Config) -> Iterator[LabUnderTest]:
    started = time.monotonic()
    lab, report = up_lab(LAB_PREFIX, HOSTS, subnet=SUBNET, unique_name=True)
    image = report.image
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(
            f"\nlab figures: image {'cached' if image and image.cached else 'built'} "
            f"in {image.seconds if image else 0:.1f}s, {len(HOSTS)} hosts ready "
            f"{report.boot_to_ready_s:.1f}s after boot, up total {time.monotonic() - started:.1f}s"
            f" (lab {lab.name} on {lab.record.subnet})"
        )
    try:
        yield LabUnderTest(lab, ports_of(lab.record.bridge))
    finally:
        destroy_lab(lab.name)  # idempotent: the last test has usually done it already


def ansible_bin(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not installed: run `make test-lab` (installs the deploy extra)")
    return found


def run_ansible(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_LOCAL_TEMP": str(cwd / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    result = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def reaches(lab: Lab, source: str, target: str) -> bool:
    """TCP connect to target's sshd from inside source, bounded at 3 s."""
    probe = f"exec 3<>/dev/tcp/{target}/22"
    result = lab.exec(source, ["timeout", "3", "bash", "-c", probe], timeout=10, check=False)
    return result.returncode == 0


def pings(lab: Lab, source: str, target: str) -> bool:
    result = lab.exec(source, ["ping", "-c", "1", "-W", "1", target], timeout=10, check=False)
    return result.returncode == 0


def controller_reaches(address: str) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=2):
            return True
    except OSError:
        return False


def test_hosts_run_systemd_as_pid1(running: LabUnderTest) -> None:
    lab = running.lab
    for host in HOSTS:
        assert lab.exec(host, ["cat", "/proc/1/comm"]).stdout.strip() == "systemd"
        state = lab.exec(host, ["systemctl", "is-system-running"], check=False).stdout.strip()
        assert state in ("running", "degraded"), (host, state, lab.failed_units(host))
        assert lab.exec(host, ["hostname"]).stdout.strip() == host
        routes = lab.exec(host, ["ip", "-4", "route"]).stdout
        assert "default" not in routes, routes


def test_ansible_reaches_hosts_over_ssh(running: LabUnderTest, tmp_path: Path) -> None:
    inventory = running.lab.write_inventory(tmp_path / "inventory.yml")
    ping_argv = [ansible_bin("ansible"), "all", "-i", str(inventory), "-m", "ansible.builtin.ping"]
    ping = run_ansible(ping_argv, tmp_path)
    assert ping.stdout.count("SUCCESS") == len(HOSTS), ping.stdout
    playbook = tmp_path / "probe.yml"
    playbook.write_text(
        """\
- name: A trivial play against every lab host
  hosts: all
  gather_facts: true
  tasks:
    - name: Hosts boot with systemd, like the VMs we deploy onto
      ansible.builtin.assert:
        that:
          - ansible_facts.service_mgr == 'systemd'
          - ansible_facts.default_ipv4 == {} or ansible_facts.default_ipv4.address is undefined
    - name: Write a file
      ansible.builtin.copy:
        content: "{{ inventory_hostname }} in {{ group_names | join(',') }}\\n"
        dest: /etc/raftlab-probe
        mode: "0644"
    - name: Groups come from host names
      ansible.builtin.assert:
        that:
          - groups['raft'] | sort == ['n1', 'n2', 'n3']
          - groups['lb'] | sort == ['lb1', 'lb2']
      run_once: true
"""
    )
    play_argv = [ansible_bin("ansible-playbook"), "-i", str(inventory), str(playbook)]
    play = run_ansible(play_argv, tmp_path)
    assert "failed=0" in play.stdout and "unreachable=0" in play.stdout, play.stdout
    assert running.lab.exec("lb2", ["cat", "/etc/raftlab-probe"]).stdout == "lb2 in lb\n"


def test_a_second_lab_runs_beside_the_first(running: LabUnderTest) -> None:
    """`make lab` then `make test`: a test lab must not collide with one that is running."""
    first = running.lab
    with pytest.raises(LabError, match="already uses"):
        up_lab(f"{LAB_PREFIX}-clash", ["n1"], subnet=first.record.subnet)
    second, _ = up_lab(LAB_PREFIX, ["n1", "lb1"], subnet="auto", unique_name=True)
    try:
        assert second.name != first.name
        assert second.record.subnet != first.record.subnet
        assert second.record.bridge != first.record.bridge
        for lab in (first, second):
            assert lab.exec("n1", ["hostname"]).stdout.strip() == "n1"
            assert controller_reaches(lab.address("n1"))
        assert reaches(second, "lb1", second.address("n1"))
        assert not pings(second, "n1", first.address("n1")), "labs share no network"
    finally:
        assert destroy_lab(second.name)
    assert leftovers(second.name, second.record.bridge) == []
    assert link_exists(running.bridge)
    assert all(link_exists(veth) for veth in running.veths)
    for host in HOSTS:
        assert first.is_running(host), host
        assert controller_reaches(first.address(host)), host
    assert reaches(first, "n1", first.address("n2"))


def test_isolate_and_heal(running: LabUnderTest) -> None:
    lab = running.lab
    assert reaches(lab, "n1", "n2") and pings(lab, "n1", "n2")
    lab.isolate("n1")
    assert not reaches(lab, "n1", "n2")
    assert not reaches(lab, "n2", "n1")
    assert not pings(lab, "lb1", "n1")
    assert reaches(lab, "n2", "n3"), "isolating n1 must not touch other links"
    assert controller_reaches(lab.address("n1")), "the controller keeps access to isolated hosts"
    lab.heal()
    assert reaches(lab, "n1", "n2") and reaches(lab, "n2", "n1") and pings(lab, "lb1", "n1")


def test_cut_one_link_and_heal(running: LabUnderTest) -> None:
    lab = running.lab
    lab.cut("n2", "n3")
    assert not reaches(lab, "n2", "n3")
    assert not reaches(lab, "n3", "n2")
    assert reaches(lab, "n2", "n1") and reaches(lab, "n3", "n1")
    lab.heal("n3")
    assert reaches(lab, "n2", "n3") and reaches(lab, "n3", "n2")
    assert all(not status.blocked for status in lab.status())


def test_one_way_cut_drops_one_direction_and_heals(running: LabUnderTest) -> None:
    lab = running.lab
    lab.cut_one_way("n2", "n3")
    blocked = {status.name: status.blocked for status in lab.status()}
    assert blocked["n3"] == [DEAF_MARK + lab.address("n2")] and blocked["n2"] == []
    assert not pings(lab, "n2", "n3"), "n2's packets must die on arrival at n3"
    rules = lab.exec("n3", ["nft", "list", "chain", "inet", "raftlab_fault", "input"]).stdout
    dropped = re.search(r"@deaf counter packets (\d+)", rules)
    assert dropped and int(dropped.group(1)) > 0, rules
    assert reaches(lab, "n2", "n1") and reaches(lab, "n1", "n3"), "other links untouched"
    lab.heal("n2")  # healing the sender clears the rule in the receiver
    assert pings(lab, "n2", "n3") and pings(lab, "n3", "n2")
    assert all(not status.blocked for status in lab.status())


def test_pause_and_resume_a_unit(running: LabUnderTest) -> None:
    lab = running.lab

    def sshd_states() -> set[str]:
        out = lab.exec("lb1", ["ps", "-o", "stat=", "-C", "sshd"]).stdout.split()
        return {state[0] for state in out}

    lab.pause("lb1", "ssh")
    assert sshd_states() == {"T"}
    lab.resume("lb1", "ssh")
    assert "T" not in sshd_states()


def test_stop_and_start_keep_the_disk(running: LabUnderTest) -> None:
    lab = running.lab
    lab.exec("lb2", ["sh", "-c", "echo kept > /var/tmp/marker"])
    assert lab.stop("lb2"), "clean poweroff finished in time"
    assert not lab.is_running("lb2")
    lab.start("lb2")
    assert lab.exec("lb2", ["cat", "/var/tmp/marker"]).stdout == "kept\n"
    assert controller_reaches(lab.address("lb2"))


def test_kill_takes_a_host_away(running: LabUnderTest) -> None:
    lab = running.lab
    files = lab.files("n3")
    init, nspawn = read_ref(files.init_pid), read_ref(files.nspawn_pid)
    assert init is not None and nspawn is not None
    lab.kill("n3")
    assert not is_alive(init) and not is_alive(nspawn)
    assert not lab.is_running("n3")
    assert not pings(lab, "n1", "n3")
    assert not controller_reaches(lab.address("n3"))


def test_destroy_leaves_nothing_behind(running: LabUnderTest) -> None:
    name = running.lab.name
    assert destroy_lab(name)
    assert leftovers(name, running.bridge) == []
    assert not link_exists(running.bridge)
    assert running.veths and not any(link_exists(veth) for veth in running.veths)
    assert not running.state_dir.exists()
    assert destroy_lab(name) is False, "a second destroy finds nothing and succeeds"
