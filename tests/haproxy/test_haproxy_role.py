"""roles/haproxy's haproxy.cfg (rendered by Ansible, checked with haproxy -c) in front of a
real three-node cluster on loopback: writes reach the leader, and a keyed write whose first
attempt may have reached a leader is never answered "nothing was done". Skipped unless
HAProxy and the deploy tools are installed (make test-haproxy)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.haproxy import role_haproxy
from tests.integration.cluster import Cluster, http, running
from tests.stalled_leader import (
    assert_never_nothing_was_done_and_applied,
    keyed_writes_to_a_stalled_leader,
)

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
