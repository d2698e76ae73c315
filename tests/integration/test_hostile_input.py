"""Operators' mistakes and hostile clients on real processes: each gets a clear 4xx, nothing
changes, and a well-behaved client keeps being served meanwhile (issue 15's probes)."""

from __future__ import annotations

from typing import Any

from tests.integration.bystander import Bystander
from tests.integration.cluster import Cluster, Response, http, running


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


def test_member_ids_past_eighteen_digits_are_refused_and_change_nothing(
    shared_cluster: Cluster,
) -> None:
    """Found by schemathesis: a body id of 10^18 was added although the spec (MemberId) and
    the path ids stop at 18 digits."""
    c = shared_cluster
    leader = c.leader()
    before = members(c, leader)
    for bad in (10**18, 2**63, 0, -1, True, "5"):
        r = c.admin(leader, "POST", "/members", {"id": bad, "peer": "127.0.0.1:1"})
        assert r.status == 400, (bad, r)
        assert "id must be an integer from 1 to 999999999999999999" in r.json()["message"]
    assert members(c, leader)["config_index"] == before["config_index"]


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


def raw(c: Cluster, node: int, method: str, path: str, body: bytes | None = None) -> Response:
    return http(method, c.url(node, path), raw=body, timeout=10.0)


def test_an_idempotency_key_reused_for_another_write_is_422(shared_cluster: Cluster) -> None:
    c = shared_cluster
    leader = c.leader()
    follower = next(i for i in (1, 2, 3) if i != leader)
    assert c.put(leader, "idem-secret", "old").status == 200
    first = c.put(leader, "idem-secret", "new", idempotency_key="idem-shared-1")
    assert first.status == 200 and first.json()["prev_value"] == "old"
    with Bystander(c.url(leader, "/kv/idem-secret")) as bystander:
        for node in (leader, follower):  # a follower forwards it: same answer
            r = c.put(node, "idem-other", "x", idempotency_key="idem-shared-1")
            assert r.status == 422, r
            body = r.json()
            assert body["error"] == "idempotency_key_reused" and "prev_value" not in body
            assert b"old" not in r.body
    bystander.assert_served()
    assert c.get(leader, "idem-other").status == 404
    assert c.get(leader, "idem-secret").json()["value"] == "new"
    again = c.put(follower, "idem-secret", "new", idempotency_key="idem-shared-1")
    assert again.status == 200 and again.headers.get("Idempotent-Replayed") == "true"


def test_keys_that_are_not_valid_text_are_400_and_never_alias(shared_cluster: Cluster) -> None:
    c = shared_cluster
    leader = c.leader()
    revision = c.status(leader)["applied"]
    for path in ("/kv/alias%ff", "/kv/alias%fe", "/kv/nul%00", "/kv/ctl%1b", "/kv/half%e2%82"):
        r = raw(c, leader, "PUT", path, b'{"value": "v"}')
        assert r.status == 400 and r.json()["error"] == "bad_key", (path, r)
        r = raw(c, leader, "GET", path)
        assert r.status == 400 and r.json()["error"] == "bad_key", (path, r)
    r = raw(c, leader, "GET", "/kv?prefix=alias%ff")
    assert r.status == 400 and r.json()["error"] == "bad_key", r
    for body in (b'{"key": "\\ud800", "value": "v"}', b'{"key": "k", "value": "\\udfff"}'):
        r = raw(c, leader, "POST", "/kv", body)
        assert r.status == 400 and r.json()["error"] in ("bad_key", "bad_value"), r
    assert c.status(leader)["applied"] == revision  # nothing was proposed


def test_a_deeply_nested_body_is_400_not_500(shared_cluster: Cluster) -> None:
    c = shared_cluster
    leader = c.leader()
    assert c.put(leader, "nest-bystander", "v").status == 200
    with Bystander(c.url(leader, "/kv/nest-bystander")) as bystander:
        for path, method in (("/kv", "POST"), ("/kv/nested", "PUT"), ("/admin/v1/members", "POST")):
            r = raw(c, leader, method, path, b"[" * 200_000)
            assert r.status == 400 and r.json()["error"] == "bad_json", (path, r)
    bystander.assert_served()
    assert "Traceback" not in c.log(leader)


def test_list_pages_are_capped_in_bytes() -> None:
    with running(limits={"max_list_bytes": 64 * 1024}) as c:
        leader = c.leader()
        for i in range(8):
            assert c.put(leader, f"big/{i}", "x" * 20_000).status == 200
        r = raw(c, leader, "GET", "/kv?prefix=big/&limit=10000")
        assert r.status == 200, r
        page = r.json()
        assert page["more"] is True and page["count"] == 3, page["count"]
        assert len(r.body) < 64 * 1024 + 4096


def test_writes_that_add_data_are_507_while_the_disk_is_nearly_full() -> None:
    with running(limits={"min_free_disk_bytes": 1 << 60}) as c:  # more than any disk has
        leader = c.leader()
        r = c.put(leader, "k", "v")
        assert r.status == 507 and r.json()["error"] == "disk_full", r
        assert "min_free_disk_bytes" in r.json()["message"]
        assert c.get(leader, "k").status == 404
        r = http("DELETE", c.url(leader, "/kv/k"))
        assert r.status == 404  # deletes still go through (to a key that is not there)


def test_start_after_pages_through_every_key(shared_cluster: Cluster) -> None:
    c = shared_cluster
    leader = c.leader()
    keys = [f"page/{i:03}" for i in range(25)]
    for k in keys:
        assert c.put(leader, k, "v").status == 200
    seen: list[str] = []
    after = ""
    for _ in range(10):
        q = f"/kv?prefix=page/&limit=10{after}"
        page = raw(c, leader, "GET", q).json()
        seen += [item["key"] for item in page["items"]]
        if not page["more"]:
            break
        after = f"&start_after={page['items'][-1]['key']}"
    assert seen == keys
    r = raw(c, leader, "GET", "/kv?prefix=page/&start_after=%ff")
    assert r.status == 400 and r.json()["error"] == "bad_key", r


def test_one_snapshot_export_at_a_time(shared_cluster: Cluster) -> None:
    import socket
    import time

    c = shared_cluster
    node = c.leader()
    # A snapshot well past what the kernel can buffer for a reader that does not read (the
    # sender's tcp_wmem grows to 4 MiB): 12 MB, so the first export is still sending.
    for i in range(120):
        assert c.put(node, f"export/{i}", "x" * 100_000).status == 200
    port = int(c.node(node).client_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(b"GET /admin/v1/snapshot HTTP/1.1\r\nHost: x\r\n\r\n")
        assert slow.recv(64).startswith(b"HTTP/1.1 200")  # streaming, and not read further

        def second() -> Response:
            return http("GET", c.url(node, "/admin/v1/snapshot"), timeout=10)

        busy = c.wait_for("the second export refused", lambda: (r := second()).status == 503 and r)
        assert busy.json()["error"] == "unavailable" and busy.headers.get("Retry-After") == "5"
        assert "already running" in busy.json()["message"]
    deadline = time.monotonic() + 15
    while (r := second()).status != 200:  # the slow reader left: exports work again
        assert time.monotonic() < deadline, r
        time.sleep(0.1)
    assert len(r.body) > 120 * 100_000
