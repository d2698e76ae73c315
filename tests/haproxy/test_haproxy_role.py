"""roles/haproxy's haproxy.cfg (rendered by Ansible, checked with haproxy -c) in front of a
real three-node cluster on loopback: writes reach the leader, a keyed write whose first
attempt may have reached a leader is never answered "nothing was done", and a server put back
after maintenance (files/haproxy_server_ready.py) takes requests only once its checks pass.
Skipped unless HAProxy and the deploy tools are installed (make test-haproxy)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.haproxy import role_haproxy
from tests.integration.cluster import Cluster, http, running
from tests.stalled_leader import (
    assert_never_nothing_was_done_and_applied,
    keyed_writes_to_a_stalled_leader,
)

BACKENDS = ("write_backend", "write_keyed_backend", "live_backend", "read_backend")
RUNNING = 2
"""srv_op_state of a server that takes requests ("show servers state")."""

pytestmark = pytest.mark.skipif(
    not role_haproxy.available(), reason="haproxy or ansible-playbook missing (make test-haproxy)"
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with running() as c:
        yield c


@pytest.fixture(scope="module")
def haproxy(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[role_haproxy.LocalHaproxy]:
    with role_haproxy.serving(tmp_path_factory.mktemp("haproxy"), cluster) as proc:
        yield proc


def test_writes_go_to_the_leader_and_reads_come_back(
    haproxy: role_haproxy.LocalHaproxy,
) -> None:
    for i in range(5):
        r = http("PUT", haproxy.url + f"/kv/route-{i}", {"value": str(i)})
        assert r.status == 200 and "x-raftnode-forwarded-to" not in r.headers, r
        keyed = http(
            "POST",
            haproxy.url + "/kv",
            {"key": f"keyed-{i}", "value": str(i)},
            headers={"Idempotency-Key": f"route-{i}"},
        )
        assert keyed.status == 200, keyed
    r = http("GET", haproxy.url + "/kv/route-4")
    assert r.status == 200 and r.json()["value"] == "4", r


def test_a_keyed_write_sent_to_a_leader_that_stalls_is_never_answered_nothing_was_done(
    cluster: Cluster, haproxy: role_haproxy.LocalHaproxy
) -> None:
    """Found by the long `make chaos` run (full disks): a keyed write reached the leader, which
    stalled; HAProxy's keyed backend sent it again to a node that could not take it (no
    quorum without the leader) and relayed that node's 503, and the write applied once the
    leader came back. Any attempt may have applied, so the keyed backend's final refusal must
    be 504 (outcome unknown); a 503 must mean it never applies."""
    results = keyed_writes_to_a_stalled_leader(cluster, haproxy.url)
    assert_never_nothing_was_done_and_applied(results)
    assert any(applied == 200 for _, _, applied in results), "no write reached the leader"


def test_a_full_disk_refusal_is_outcome_unknown_for_keyed_writes_only(
    tmp_path: Path,
) -> None:
    """507 disk_full is a refusal before proposing: certain for a write sent once, but not for
    a keyed write whose earlier attempt may have reached a leader. (The keyed backend cannot
    tell its attempts apart, so it answers 504 for any; the write backend passes 507 on.)"""
    with (
        running(limits={"min_free_disk_bytes": 1 << 62}) as full,
        role_haproxy.serving(tmp_path, full, routed=507) as proc,
    ):
        plain = http("PUT", proc.url + "/kv/a", {"value": "v"})
        assert (plain.status, plain.json()["error"]) == (507, "disk_full"), plain
        keyed = http("PUT", proc.url + "/kv/a", {"value": "v"}, headers={"Idempotency-Key": "a"})
        assert (keyed.status, keyed.json()["error"]) == (504, "outcome_unknown"), keyed
        assert keyed.headers.get("x-raftnode-error") == "outcome_unknown", keyed.headers


def op_states(haproxy: role_haproxy.LocalHaproxy, server: str) -> dict[str, int]:
    """Each backend's srv_op_state for ``server`` (0 down, 2 running)."""
    return {
        r["be_name"]: int(r["srv_op_state"])
        for r in haproxy.servers_state()
        if r["srv_name"] == server
    }


def put_back(haproxy: role_haproxy.LocalHaproxy, server: str) -> list[str]:
    """The backends the role's script changed."""
    done = haproxy.put_back(server)
    assert done.returncode == 0, done.stderr
    changed: list[str] = json.loads(done.stdout)["changed"]
    return changed


def test_a_server_put_back_takes_requests_only_once_its_checks_pass(
    cluster: Cluster, haproxy: role_haproxy.LocalHaproxy
) -> None:
    """Found under the Molecule rotation's write loop: "enable server" starts a checked server
    UP before its first check, so a follower put back after its restart took writes until that
    check failed and cut them (the client's connection closed with no answer). Put back by the
    script, a follower never runs in the write backends, and the leader runs there only after
    its check passed."""
    leader = cluster.leader()
    follower = next(n.ports.node_id for n in cluster.nodes if n.ports.node_id != leader)
    for node in (follower, leader):
        for backend in BACKENDS:
            assert haproxy.admin(f"disable server {backend}/n{node}").strip() == ""
    try:
        assert sorted(put_back(haproxy, f"n{follower}")) == sorted(BACKENDS)
        assert sorted(put_back(haproxy, f"n{leader}")) == sorted(BACKENDS)
        first = op_states(haproxy, f"n{leader}")
        assert first["write_backend"] != RUNNING, "the leader ran before a check passed"
        seen = []
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            seen.append(op_states(haproxy, f"n{follower}"))
            if seen[-1]["read_backend"] == RUNNING and len(seen) > 20:
                break
            time.sleep(0.02)
        assert all(s["write_backend"] != RUNNING for s in seen), seen
        assert all(s["write_keyed_backend"] != RUNNING for s in seen), seen
        assert seen[-1]["read_backend"] == RUNNING, "the follower's read checks never passed"
        cluster.wait_for(
            "the leader runs in the write backends",
            lambda: op_states(haproxy, f"n{leader}")["write_keyed_backend"] == RUNNING,
            timeout=5.0,
        )
        assert put_back(haproxy, f"n{follower}") == [], "a second run changed something"
    finally:
        for node in (follower, leader):
            for backend in BACKENDS:
                haproxy.admin(f"set server {backend}/n{node} state ready")


def test_putting_back_an_unknown_server_changes_nothing_and_a_dead_socket_is_named(
    haproxy: role_haproxy.LocalHaproxy, tmp_path: Path
) -> None:
    assert put_back(haproxy, "no-such-node") == []
    missing = tmp_path / "admin.sock"
    done = haproxy.put_back("n1", admin_socket=missing)
    assert done.returncode == 1
    assert f"cannot talk to HAProxy on {missing}" in done.stderr, done.stderr
    assert done.stdout == ""
