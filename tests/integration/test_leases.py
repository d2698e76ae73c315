"""Leases on real processes: grant, attach, keep-alive, revoke through any node (a follower
forwards to the leader); a lease whose keep-alives stop loses its keys within TTL plus a little,
never before the TTL; across a leader SIGKILL never before the TTL either (the new leader gives
it the full TTL again) and within TTL + one election after the kill."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.integration.cluster import Cluster, Response, http, running

TTL = 2


@pytest.fixture(scope="module")
def c() -> Any:
    with running() as cluster:
        yield cluster


def others(leader: int) -> list[int]:
    return [i for i in (1, 2, 3) if i != leader]


def grant(c: Cluster, node: int, ttl: int, lease: int | None = None) -> Response:
    body: dict[str, Any] = {"ttl": ttl}
    if lease is not None:
        body["id"] = lease
    return http("POST", c.url(node, "/lease"), body)


def put(c: Cluster, node: int, key: str, value: str, lease: int | None) -> Response:
    body: dict[str, Any] = {"value": value}
    if lease is not None:
        body["lease"] = lease
    return http("PUT", c.url(node, f"/kv/{key}"), body)


def present(c: Cluster, nodes: list[int], key: str) -> bool | None:
    """Whether ``key`` exists (stale reads: each node's applied state), or None when no node
    answered."""
    for node in nodes:
        r = c.get(node, key, consistency="stale")
        if r.status in (200, 404):
            return r.status == 200
    return None


def test_grant_attach_keepalive_and_revoke_through_any_node(c: Cluster) -> None:
    leader = c.leader()
    follower = others(leader)[0]
    r = grant(c, follower, 30)  # forwarded to the leader
    assert r.status == 200, r
    lease = r.json()["id"]
    assert r.json()["ttl"] == r.json()["granted_ttl"] == 30
    assert put(c, follower, "svc/a", "1", lease).json()["lease"] == lease
    assert put(c, leader, "svc/b", "2", lease).status == 200
    assert put(c, leader, "svc/c", "3", lease).status == 200
    assert put(c, leader, "svc/c", "3", None).status == 200  # a put without lease detaches
    got = c.wait_for("the put on a follower", lambda: c.get(follower, "svc/a").json())
    assert got["lease"] == lease
    info = http("GET", c.url(follower, f"/lease/{lease}")).json()
    assert info["keys"] == ["svc/a", "svc/b"] and info["key_count"] == 2
    assert 0 < info["ttl"] <= 30 and info["granted_ttl"] == 30
    listed = http("GET", c.url(leader, "/lease")).json()
    assert lease in [item["id"] for item in listed["leases"]] and listed["count"] >= 1
    kept = http("POST", c.url(follower, f"/lease/{lease}/keepalive"))
    assert kept.status == 200 and kept.json()["ttl"] == 30, kept
    revoked = http("DELETE", c.url(follower, f"/lease/{lease}"))
    assert revoked.status == 200 and revoked.json()["revoked"], revoked
    for node in (1, 2, 3):
        c.wait_for("the revoke", lambda n=node: c.get(n, "svc/a").status == 404)
        assert c.get(node, "svc/b").status == 404 and c.get(node, "svc/c").status == 200
    for method, path in (("POST", f"/lease/{lease}/keepalive"), ("GET", f"/lease/{lease}")):
        gone = http(method, c.url(follower, path))
        assert gone.status == 404 and gone.json()["error"] == "lease_not_found", gone
        assert gone.json()["id"] == lease and str(lease) in gone.json()["message"]
    assert http("DELETE", c.url(leader, f"/lease/{lease}")).status == 404
    unknown = put(c, leader, "svc/d", "4", lease)
    assert unknown.status == 404 and unknown.json()["error"] == "lease_not_found"
    assert c.get(leader, "svc/d").status == 404


def test_bad_lease_requests_are_refused(c: Cluster) -> None:
    leader = c.leader()
    for body in ({"ttl": 0}, {"ttl": "5"}, {"ttl": 5, "id": 0}, {"ttl": 5, "extra": 1}, {},
                 {"ttl": 5, "id": None}):  # fmt: skip
        r = http("POST", c.url(leader, "/lease"), body)
        assert r.status == 400, (body, r)
    assert http("GET", c.url(leader, "/lease/abc")).status == 400
    assert http("PUT", c.url(leader, "/lease")).status == 405
    assert put(c, leader, "k", "v", 0).status == 400
    taken = grant(c, leader, 30, 777)
    assert taken.status == 200 and taken.json()["id"] == 777
    again = grant(c, others(leader)[0], 30, 777)
    assert again.status == 409 and again.json()["error"] == "lease_exists", again
    assert http("DELETE", c.url(leader, "/lease/777")).status == 200


def test_a_lease_whose_keepalives_stop_loses_its_keys_after_the_ttl(c: Cluster) -> None:
    leader = c.leader()
    follower = others(leader)[0]
    lease = grant(c, leader, TTL).json()["id"]
    assert put(c, leader, "ka/k", "v", lease).status == 200
    for _ in range(6):  # 3 s of keep-alives: longer than the TTL
        time.sleep(0.5)
        last = time.monotonic()
        assert http("POST", c.url(follower, f"/lease/{lease}/keepalive")).status == 200
    c.wait_for("the lease's key on every node", lambda: present(c, [1, 2, 3], "ka/k"))
    c.wait_for("the expiry", lambda: present(c, [leader], "ka/k") is False, timeout=TTL + 5)
    waited = time.monotonic() - last
    assert TTL <= waited <= TTL + 2  # never before the TTL; soon after it
    c.wait_for("the expiry everywhere", lambda: not any(present(c, [n], "ka/k") for n in (1, 2, 3)))
    assert http("GET", c.url(leader, f"/lease/{lease}")).status == 404


def test_a_leader_kill_never_expires_a_lease_early_and_it_still_expires() -> None:
    ttl = 3
    with running() as c:
        old = c.leader()
        rest = others(old)
        sent = time.monotonic()
        r = grant(c, old, ttl)
        assert r.status == 200, r
        lease = r.json()["id"]
        assert put(c, old, "fo/k", "v", lease).status == 200
        c.wait_for("the key on the others", lambda: all(present(c, [n], "fo/k") for n in rest))
        time.sleep(1.0)
        killed = time.monotonic()
        c.kill(old)
        # Until the old leader's deadline and a new full TTL from the kill: still there.
        while time.monotonic() < killed + ttl - 0.2:
            assert present(c, rest, "fo/k") is not False, time.monotonic() - killed
            time.sleep(0.05)
        new = c.leader(among=rest)
        c.wait_for(
            "the expiry by the new leader",
            lambda: present(c, [new], "fo/k") is False,
            timeout=ttl + 10,
        )
        gone = time.monotonic()
        assert gone - sent >= ttl and gone - killed >= ttl
        assert gone - killed <= ttl + 3  # TTL + the election (about 1 s) + polling
        c.wait_for("the expiry on both", lambda: not any(present(c, [n], "fo/k") for n in rest))
