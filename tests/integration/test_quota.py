"""The store's quota (limits.max_store_bytes): past it, writes that add data get 507 and an
alarm, deletes and shrinking writes still work, and nothing already written is lost."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.cluster import Cluster, http, running

QUOTA = 4000
VALUE = "v" * 100


@pytest.fixture(scope="module")
def small_cluster() -> Iterator[Cluster]:
    with running(limits={"max_store_bytes": QUOTA}) as c:
        yield c


def metric(c: Cluster, node: int, name: str) -> float:
    text = c.health(node, "/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported by node {node}")


def test_writes_past_the_quota_get_507_deletes_still_work(small_cluster: Cluster) -> None:
    c = small_cluster
    leader = c.leader()
    written: list[str] = []
    refused = None
    for i in range(100):
        r = c.put(leader, f"q-{i:03d}", VALUE)
        if r.status != 200:
            refused = r
            break
        written.append(f"q-{i:03d}")
    assert refused is not None and refused.status == 507, refused
    body = refused.json()
    assert body["error"] == "quota_exceeded" and "max_store_bytes" in body["message"]
    assert 30 <= len(written) <= QUOTA // 100
    assert metric(c, leader, "raftnode_quota_alarm") == 1.0
    assert metric(c, leader, "raftnode_quota_refusals_total") >= 1
    assert metric(c, leader, "raftnode_store_quota_bytes") == QUOTA
    # A follower refuses the same write the same way (forwarded, or checked before proposing).
    follower = next(i for i in (1, 2, 3) if i != leader)
    assert c.put(follower, "q-extra", VALUE).status == 507
    # Overwriting with a value no larger than before does not grow the store: allowed.
    assert c.put(leader, written[0], "short").status == 200
    # Deletes work, and make room again.
    for key in written[:10]:
        assert http("DELETE", c.url(leader, f"/kv/{key}")).status == 200
    assert c.put(leader, "q-after-delete", VALUE).status == 200
    # Nothing acknowledged was lost, on any node.
    for node in (1, 2, 3):
        for key in written[10:]:
            r = c.get(node, key)
            assert r.status == 200 and r.json()["value"] == VALUE, (node, key, r)
