"""testinfra, run by `molecule verify` against every lab host over SSH (Ansible connection)."""

from __future__ import annotations

from typing import Any

EXPECTED_GROUPS = {"n1": "raft", "n2": "raft", "n3": "raft", "lb1": "lb", "lb2": "lb"}


def test_pid1_is_systemd(host: Any) -> None:
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"


def test_system_is_running(host: Any) -> None:
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in ("running", "degraded")


def test_sshd_runs_under_systemd(host: Any) -> None:
    assert host.service("ssh").is_running


def test_converge_wrote_the_groups(host: Any) -> None:
    name = host.backend.get_hostname()
    assert host.file("/etc/raftlab-groups").content_string.strip() == EXPECTED_GROUPS[name]


def test_no_default_route(host: Any) -> None:
    assert "default" not in host.run("ip -4 route").stdout
