"""Growing, changing and shrinking a running cluster through the admin API (as
``raftnode member ...`` and ``raftnode leader transfer`` do), on real processes."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.integration.cluster import Cluster, http


def test_join_promote_transfer_and_remove_the_leader(cluster: Cluster) -> None:
    c = cluster
    leader = c.leader()
    follower = next(i for i in (1, 2, 3) if i != leader)
    for i in range(200):  # more than the cluster's snapshot interval: the joiner needs one
        assert c.put(leader, f"before-{i}", str(i)).status == 200

    joiner = c.add_joiner()
    assert c.admin(follower, "POST", "/members", {"id": 4, "peer": "nohost"}).status == 400
    body = {"id": 4, "peer": f"127.0.0.1:{joiner.ports.peer}"}
    body["client"] = f"127.0.0.1:{joiner.ports.client}"
    r = c.admin(follower, "POST", "/members", body)  # forwarded to the leader
    assert r.status == 200, r
    assert r.json()["learners"] == [4] and r.json()["voters"] == [1, 2, 3]
    again = c.admin(leader, "POST", "/members", body)
    assert again.status == 409 and "already a member" in again.json()["message"]
    early = c.admin(leader, "POST", "/members/4/promote")
    assert early.status == 409, early  # not caught up: it has not even started
    assert "caught up" in early.json()["message"]

    c.start(4)

    def role_of_4() -> str:
        members = c.admin(leader, "GET", "/members").json()["members"]
        return str(next(m["role"] for m in members if m["id"] == 4))

    c.wait_for("node 4 promoted once caught up", lambda: role_of_4() == "voter", timeout=30)
    members = c.admin(4, "GET", "/members").json()  # asked at the new node: forwarded
    assert [m["id"] for m in members["members"]] == [1, 2, 3, 4]
    assert all(m["role"] == "voter" for m in members["members"])
    assert c.get(4, "before-199").json()["value"] == "199"
    cluster_id = c.status(leader)["cluster_id"]
    assert cluster_id != "00" * 16 and c.status(4)["cluster_id"] == cluster_id  # learned it
    assert c.put(4, "after-join", "x").status == 200  # forwarded from the new member

    command = ["status", "--cluster", "--json", "--endpoint", c.node(follower).client_url]
    shown = subprocess.run(
        [sys.executable, "-m", "raftnode.cli", *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    assert [r["id"] for r in rows] == [1, 2, 3, 4]
    assert all(r["healthy"] and r["membership"] == "voter" for r in rows)
    assert sorted(r["role"] for r in rows).count("leader") == 1

    r = c.admin(1 if leader != 1 else 2, "POST", "/leader/transfer", {"to": 4})
    assert r.status == 200 and r.json()["leader"] == 4, r
    assert c.leader(among=[1, 2, 3, 4]) == 4

    r = c.admin(1, "DELETE", "/members/4")  # the leader itself: it hands over first
    assert r.status == 200, r
    assert r.json()["voters"] == [1, 2, 3] and r.json()["learners"] == []
    new_leader = c.leader(among=[1, 2, 3])
    c.wait_for(
        "the removed node stops serving",
        lambda: (
            c.health(4, "/readiness").status == 503
            and "not a member" in c.get(4, "before-1", "stale").json().get("message", "")
        ),
        timeout=15,
    )
    assert c.health(4, "/replica").status == 503
    assert c.admin(new_leader, "DELETE", "/members/9").status == 404
    assert c.put(new_leader, "after-remove", "y").status == 200
    for node in (1, 2, 3):
        listing = http("GET", c.url(node, "/kv?prefix=before-&limit=1000")).json()
        assert listing["count"] == 200, node
