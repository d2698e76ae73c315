"""nginx as the balancer: it serves with its Lua checks, routes as HAProxy does, and the fault
rounds through it lost nothing and stayed within the same bounds as HAProxy's."""

from __future__ import annotations

import json
import re
from typing import Any

import fault_rounds
import lab_probe
import pytest

NGINX_STATUS_PORT = 8405
WRITES = 20
READS = 30


@pytest.fixture(scope="module")
def lab() -> lab_probe.Lab:
    return lab_probe.load_lab()


def groups_of(host: Any) -> list[str]:
    return list(host.ansible.get_variables().get("group_names", []))


def metric_sum(text: str, name: str) -> float:
    """The sum of every sample of ``name`` (any labels) in Prometheus text."""
    pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", re.MULTILINE)
    return sum(float(value) for value in pattern.findall(text))


def node_metric(address: str, name: str) -> float:
    status, _, body = lab_probe.request(f"http://{address}:{lab_probe.HEALTH_PORT}/metrics")
    assert status == 200, address
    return metric_sum(body.decode(), name)


def test_balancer_runs_nginx_not_haproxy(host: Any) -> None:
    if "lb" not in groups_of(host):
        pytest.skip("not a balancer")
    assert host.service("nginx").is_running
    assert host.service("nginx").is_enabled
    assert not host.service("haproxy").is_running
    assert host.service("keepalived").is_running
    assert host.run("nginx -t -q").rc == 0
    # keepalived tracks nginx's unit (0 while it runs) and checks nginx's monitor URI.
    assert host.file("/run/keepalived-track/nginx").content_string.strip() == "0"
    assert "/nginx-health" in host.file("/etc/keepalived/check_haproxy.sh").content_string


def test_each_nginx_sees_exactly_one_leader(lab: lab_probe.Lab) -> None:
    for name, address in lab.lb.items():
        status, _, body = lab_probe.request(f"http://{address}:{NGINX_STATUS_PORT}/metrics")
        assert status == 200, name
        text = body.decode()
        assert metric_sum(text, "raftnode_balancer_write_servers") == 1, (name, text)
        status, _, body = lab_probe.request(f"http://{address}:8080/nginx-health")
        assert status == 200, name
        status, _, body = lab_probe.request(f"http://{address}:{NGINX_STATUS_PORT}/stub_status")
        assert status == 200 and b"Active connections" in body, name


def test_writes_through_the_vip_land_on_the_leader(lab: lab_probe.Lab) -> None:
    """No follower forwards any of them: nginx sent every write to the leader itself."""
    before = {a: node_metric(a, "raftnode_forwarded_requests_total") for a in lab.raft.values()}
    for n in range(WRITES):
        result = lab_probe.write(lab.vip_url, f"nginx-route-{n}", "v", timeout=5)
        assert result["status"] == 200, result
    after = {a: node_metric(a, "raftnode_forwarded_requests_total") for a in lab.raft.values()}
    assert after == before, (before, after)


def test_reads_through_the_vip_spread_over_every_ready_node(lab: lab_probe.Lab) -> None:
    name = "raftnode_read_seconds_count"
    before = {a: node_metric(a, name) for a in lab.raft.values()}
    for _ in range(READS):
        status, _, body = lab_probe.request(f"{lab.vip_url}/kv/nginx-route-0")
        assert status == 200 and json.loads(body)["value"] == "v", body
    served = {a: node_metric(a, name) - before[a] for a in lab.raft.values()}
    # Round-robin over three ready nodes: about READS / 3 each; every node took some.
    assert all(count >= READS / 6 for count in served.values()), served


def test_ten_leader_kills_through_nginx_lost_nothing() -> None:
    # The failover scenario's bounds (HAProxy).
    fault_rounds.check_rounds_report("leader-kill-nginx", median_bound_ms=1500, max_bound_ms=5000)


def test_ten_nginx_kills_each_have_a_short_window() -> None:
    # failover's bounds for HAProxy (test_lb_failover.py).
    fault_rounds.check_rounds_report("lb-kill-nginx", median_bound_ms=2000, max_bound_ms=5000)


def test_the_vip_stays_while_a_killed_nginx_restarts_in_place() -> None:
    """systemd restarts a crashed nginx (the role's drop-in) quicker than the VIP could move."""
    rounds = json.loads(lab_probe.ephemeral("rounds-lb-kill-nginx.json").read_text())["rounds"]
    assert len({r["target"] for r in rounds}) == 1, [r["target"] for r in rounds]
