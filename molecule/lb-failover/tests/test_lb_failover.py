"""The VIP left a balancer whose HAProxy stopped, stayed put when it came back, was logged."""

from __future__ import annotations

import json
from typing import Any

import lab_probe
import pytest

# Check (2 x 1 s) + VRRP takeover (~0.5 s with advert_int 0.5): about 3 s; bound generously.
FAILOVER_BOUND_S = 10.0


def report() -> dict:
    return json.loads(lab_probe.ephemeral("lb-failover.json").read_text())


def test_the_vip_moved_to_the_other_balancer() -> None:
    r = report()
    assert len(r["after_failover"]) == 1, r
    assert r["after_failover"][0] != r["first_holder"], r


def test_writes_through_the_vip_came_back_quickly() -> None:
    write = report()["write"]
    assert write["ok"], write
    assert write["seconds"] < FAILOVER_BOUND_S, write


def test_the_vip_stayed_when_haproxy_came_back() -> None:
    r = report()
    assert r["after_recovery"] == r["after_failover"], r  # nopreempt: no second move


def test_every_transition_is_logged(host: Any) -> None:
    if "lb" not in host.ansible.get_variables().get("group_names", []):
        pytest.skip("not a balancer")
    name = host.backend.get_hostname()
    log = host.run("journalctl -t keepalived-vip --no-pager -o cat").stdout
    assert "is now MASTER" in log or "is now BACKUP" in log, log
    r = report()
    if name == r["first_holder"]:
        assert "is now FAULT" in log, log
    if name == r["after_failover"][0]:
        assert "is now MASTER" in log, log


def test_haproxy_serves_again_on_both() -> None:
    lab = lab_probe.load_lab()
    for address in lab.lb.values():
        status, _, _ = lab_probe.request(f"http://{address}:8080/haproxy-health")
        assert status == 200, address
