"""The balancers' daemons run sandboxed (the roles' systemd drop-ins) and still do their job."""

from __future__ import annotations

import re
from typing import Any

import pytest

# `systemd-analyze security` ceilings: raftnode's own unit is checked in test_default.py.
CEILINGS = {"haproxy": 3.0, "keepalived": 3.0}


def exposure(host: Any, unit: str) -> float:
    out = host.run(f"systemd-analyze security {unit}.service").stdout
    found = re.search(rf"Overall exposure level for {unit}\.service: ([0-9.]+)", out)
    assert found is not None, out
    return float(found[1])


@pytest.mark.parametrize("unit", sorted(CEILINGS))
def test_balancer_daemon_is_sandboxed_and_running(host: Any, unit: str) -> None:
    if "lb" not in host.ansible.get_variables().get("group_names", []):
        pytest.skip("not a balancer")
    assert host.service(unit).is_running
    assert host.file(f"/etc/systemd/system/{unit}.service.d/60-sandbox.conf").exists
    # The running process is the sandboxed one (not a process started before the drop-in).
    props = host.run(f"systemctl show {unit} -p ProtectSystem -p NoNewPrivileges").stdout
    assert "ProtectSystem=strict" in props and "NoNewPrivileges=yes" in props, props
    pid = host.run(f"systemctl show {unit} -p MainPID --value").stdout.strip()
    mounts = host.file(f"/proc/{pid}/mountinfo").content_string
    assert re.search(r" / / ro[, ]", mounts) or re.search(r" /usr \S+ ro[, ]", mounts), (
        "the main process does not see a read-only system: started before its sandbox?"
    )
    level = exposure(host, unit)
    assert level <= CEILINGS[unit], f"{unit}: exposure {level} > {CEILINGS[unit]}"


def test_haproxy_sandbox_keeps_its_admin_socket_and_state_file(host: Any) -> None:
    if "lb" not in host.ansible.get_variables().get("group_names", []):
        pytest.skip("not a balancer")
    sock = host.file("/run/haproxy/admin.sock")
    assert sock.is_socket and sock.user == "root"
    assert host.run("systemctl reload haproxy").rc == 0
    assert host.service("haproxy").is_running
    state = host.file("/var/lib/haproxy/server-state")
    assert state.exists and state.content_string.startswith("1\n")


def test_haproxy_runs_under_sched_batch_after_a_reload(host: Any) -> None:
    """haproxy_cpu_scheduling: batch. systemd starts the master under SCHED_BATCH (3); its
    workers, those of the reload in the test above included, inherit it in every thread."""
    if "lb" not in host.ansible.get_variables().get("group_names", []):
        pytest.skip("not a balancer")
    pids = host.run("pgrep -x haproxy").stdout.split()
    assert len(pids) >= 2, "a master and at least one worker"
    stats = host.run(f"cat {' '.join(f'/proc/{pid}/task/*/stat' for pid in pids)}").stdout
    policies = {line.rsplit(")", 1)[1].split()[41 - 3] for line in stats.splitlines()}
    assert policies == {"3"}, policies
