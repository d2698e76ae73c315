"""Operators' mistakes and hostile clients on real processes: each gets a clear 4xx, nothing
changes, and a well-behaved client keeps being served meanwhile (issue 15's probes)."""

from __future__ import annotations

from typing import Any

from tests.integration.bystander import Bystander
from tests.integration.cluster import Cluster


def members(c: Cluster, node: int) -> dict[str, Any]:
    r = c.admin(node, "GET", "/members")
    assert r.status == 200, r
    answer: dict[str, Any] = r.json()
    return answer


def roster(c: Cluster, node: int) -> list[tuple[int, str, str]]:
    """Who is a member, as what, at which peer address (not the moving match indexes)."""
    return [(m["id"], m["role"], m["peer"]) for m in members(c, node)["members"]]


def test_promoting_ids_that_are_not_members_is_refused(shared_cluster: Cluster) -> None:
    c = shared_cluster
    leader = c.leader()
    before = members(c, leader)
    before_roster = roster(c, leader)
    assert c.put(leader, "bystander", "here").status == 200
    with Bystander(c.url(leader, "/kv/bystander")) as bystander:
        for stranger in (97, 98, 99):
            r = c.admin(leader, "POST", f"/members/{stranger}/promote")
            assert r.status == 409, r
            assert r.json()["error"] == "conflict"
            assert f"node {stranger} is not a learner" in r.json()["message"]
        after = members(c, leader)
        assert roster(c, leader) == before_roster
        assert after["config_index"] == before["config_index"]
        assert c.put(leader, "after-promotes", "still writable").status == 200
    bystander.assert_served()


def test_membership_changes_carry_the_configuration_they_were_decided_on(
    shared_cluster: Cluster,
) -> None:
    c = shared_cluster
    leader = c.leader()
    follower = next(i for i in (1, 2, 3) if i != leader)
    seen = members(c, follower)  # forwarded: the leader's view
    stale = seen["config_index"] - 1
    r = c.admin(follower, "DELETE", f"/members/{follower}?prev_index={stale}")
    assert r.status == 409 and "changed since index" in r.json()["message"], r
    r = c.admin(leader, "POST", f"/members/3/promote?prev_index={stale}")
    assert r.status == 409, r
    for bad in ("-1", "x", "%EF%BC%91"):
        r = c.admin(leader, "DELETE", f"/members/{follower}?prev_index={bad}")
        assert r.status == 400 and r.json()["error"] == "bad_param", r
    assert roster(c, leader) == [(m["id"], m["role"], m["peer"]) for m in seen["members"]]


def test_adding_a_member_at_an_address_in_use_is_refused(shared_cluster: Cluster) -> None:
    c = shared_cluster
    leader = c.leader()
    before = members(c, leader)
    before_roster = roster(c, leader)
    taken = next(m["peer"] for m in before["members"] if m["id"] != leader)
    r = c.admin(leader, "POST", "/members", {"id": 7, "peer": taken})
    assert r.status == 409 and "already used by member" in r.json()["message"], r
    taken_client = next(m["client"] for m in before["members"] if m["id"] != leader)
    r = c.admin(
        leader, "POST", "/members", {"id": 7, "peer": "127.0.0.1:1", "client": taken_client}
    )
    assert r.status == 409 and "already used by member" in r.json()["message"], r
    for bad_id in ("0", "%C2%B2", "99999999999999999999999"):
        r = c.admin(leader, "POST", f"/members/{bad_id}/promote")
        assert r.status == 400, r
    assert roster(c, leader) == before_roster
