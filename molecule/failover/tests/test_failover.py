"""After the leader's host crashed and came back: a new leader took over fast, nothing lost."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "default"))

import lab_probe

# Raft needs 0.5-1 s to elect, HAProxy up to 0.25 s to see it; the bound is generous on purpose.
FAILOVER_BOUND_S = 15.0

LAB = lab_probe.load_lab()


def report() -> dict:
    return json.loads(lab_probe.ephemeral("failover.json").read_text())


def test_a_new_leader_took_over() -> None:
    r = report()
    assert r["new_leader"] is not None, r
    assert r["new_leader"] != r["old_leader"], r


def test_writes_through_the_vip_came_back_quickly() -> None:
    write = report()["write"]
    assert write["ok"], write
    assert write["seconds"] < FAILOVER_BOUND_S, write


def test_acknowledged_write_survived_the_crash() -> None:
    status, _, body = lab_probe.request(f"{LAB.vip_url}/kv/before-failover")
    assert status == 200 and b"kept" in body


def test_the_write_after_failover_is_there() -> None:
    value = report()["write"]["value"]
    status, _, body = lab_probe.request(f"{LAB.vip_url}/kv/after-failover")
    assert status == 200 and value.encode() in body


def test_rebooted_node_rejoined_and_one_leader_remains() -> None:
    codes = lab_probe.primary_codes(list(LAB.raft.values()))
    assert sorted(codes.values()) == [200, 503, 503], codes
    old = LAB.raft[report()["old_leader"]]
    status, _, _ = lab_probe.request(f"http://{old}:10001/readiness")
    assert status == 200


def test_haproxy_routes_writes_to_the_current_leader() -> None:
    leader = lab_probe.leader(list(LAB.raft.values()))
    name = next(n for n, a in LAB.raft.items() if a == leader)
    for lb in LAB.lb:
        assert lab_probe.write_servers(LAB.stats_url(lb)) == [name], lb
