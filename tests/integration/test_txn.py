"""Revisions per key, CAS on mod_revision, POST /txn and key ranges on a real three-node cluster;
two clients racing transactions on the same keys: exactly one wins each round."""

from __future__ import annotations

import threading
import uuid
from typing import Any
from urllib.parse import quote

import pytest

from tests.integration.cluster import Cluster, Response, http, running

LIMITS = {"max_txn_ops": 8, "max_txn_bytes": 4096}


@pytest.fixture(scope="module")
def c() -> Any:
    with running(limits=LIMITS) as cluster:
        yield cluster


def others(c: Cluster, leader: int) -> list[int]:
    return [i for i in (1, 2, 3) if i != leader]


def txn(c: Cluster, node: int, body: Any, key: str | None = None) -> Response:
    headers = {"Idempotency-Key": key} if key else None
    return http("POST", c.url(node, "/txn"), body, headers=headers)


def listing(c: Cluster, node: int, query: str) -> Response:
    return http("GET", c.url(node, f"/kv?{query}"))


def test_keys_carry_their_revisions(c: Cluster) -> None:
    leader = c.leader()
    first = c.put(leader, "rev/a", "1").json()
    assert first["create_revision"] == first["mod_revision"] == first["revision"]
    assert first["version"] == 1
    second = c.put(others(c, leader)[0], "rev/a", "2").json()  # forwarded to the leader
    assert (second["create_revision"], second["version"]) == (first["revision"], 2)
    for node in (1, 2, 3):
        got = c.get(node, "rev/a").json()
        assert got == {
            "value": "2",
            "create_revision": first["revision"],
            "mod_revision": second["revision"],
            "version": 2,
        }
    assert http("DELETE", c.url(leader, "/kv/rev/a")).status == 200
    again = c.put(leader, "rev/a", "3").json()
    assert again["version"] == 1 and again["create_revision"] == again["revision"]
    item = listing(c, leader, "prefix=rev/").json()["items"][0]
    assert item == {"key": "rev/a", "value": "3", **{k: again[k] for k in item if k.endswith("n")}}


def test_cas_on_mod_revision(c: Cluster) -> None:
    leader = c.leader()
    seen = c.put(leader, "aba", "A").json()["revision"]
    c.put(leader, "aba", "B")
    now = c.put(leader, "aba", "A").json()["revision"]  # back to A: the value CAS would pass
    r = http("PUT", c.url(leader, "/kv/aba"), {"value": "C", "prev_revision": seen})
    assert r.status == 409 and r.json()["error"] == "cas_mismatch", r
    assert r.json()["mod_revision"] == now and r.json()["current_value"] == "A"
    assert c.get(leader, "aba").json()["value"] == "A"
    r = http("POST", c.url(leader, "/kv"), {"key": "aba", "value": "C", "prev_revision": now})
    assert r.status == 200 and r.json()["version"] == 4
    r = http("DELETE", c.url(others(c, leader)[0], f"/kv/aba?prev_revision={now}"))
    assert r.status == 409
    r = http("POST", c.url(leader, "/kv"), {"key": "fresh", "value": "x", "prev_revision": 0})
    assert r.status == 200 and r.json()["created"]
    r = http("POST", c.url(leader, "/kv"), {"key": "fresh", "value": "y", "prev_revision": 0})
    assert r.status == 409 and r.json()["exists"]


def test_txn_then_and_else_at_one_revision(c: Cluster) -> None:
    leader = c.leader()
    follower = others(c, leader)[0]
    base = c.put(leader, "acct/a", "10").json()["revision"]
    body = {
        "compare": [
            {"key": "acct/a", "target": "mod_revision", "op": "equal", "value": base},
            {"key": "acct/b", "target": "exists", "op": "equal", "value": False},
        ],
        "success": [
            {"op": "put", "key": "acct/a", "value": "5"},
            {"op": "put", "key": "acct/b", "value": "5"},
            {"op": "get", "key": "acct/a"},
        ],
        "failure": [{"op": "get", "key": "acct/a"}, {"op": "get", "key": "acct/b"}],
    }
    r = txn(c, follower, body)  # forwarded
    assert r.status == 200, r
    out = r.json()
    assert out["succeeded"] and out["revision"] == base + 1
    put_a, put_b, get_a = out["results"]
    assert put_a["mod_revision"] == put_b["mod_revision"] == base + 1
    assert put_a["prev_value"] == "10" and not put_a["created"] and put_b["created"]
    assert get_a["value"] == "5" and get_a["version"] == 2
    r = txn(c, leader, body)  # the compares fail now: the else branch, no new revision
    out = r.json()
    assert r.status == 200 and not out["succeeded"] and out["revision"] == base + 1
    assert [x["value"] for x in out["results"]] == ["5", "5"]
    listed = listing(c, follower, "prefix=acct/").json()["items"]
    assert {x["key"]: x["mod_revision"] for x in listed} == {"acct/a": base + 1, "acct/b": base + 1}


def test_a_keyed_txn_replays_and_another_body_is_422(c: Cluster) -> None:
    leader = c.leader()
    key = str(uuid.uuid4())
    body = {"success": [{"op": "put", "key": "idem/txn", "value": "1"}]}
    first = txn(c, leader, body, key)
    again = txn(c, others(c, leader)[0], body, key)
    assert first.status == again.status == 200
    assert again.json() == first.json() and again.headers.get("Idempotent-Replayed") == "true"
    other = txn(c, leader, {"success": [{"op": "put", "key": "idem/txn", "value": "2"}]}, key)
    assert other.status == 422 and other.json()["error"] == "idempotency_key_reused"
    assert c.get(leader, "idem/txn").json()["version"] == 1


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"success": [{"op": "get", "key": f"k{i}"} for i in range(9)]}, 413, "max_txn_ops"),
        ({"success": [{"op": "put", "key": "k", "value": "v" * 5000}]}, 413, "max_txn_bytes"),
        ({"success": [{"op": "put", "key": "bad/txn"}]}, 400, "needs value"),
        ({"compare": [{"key": "k", "target": "ttl", "op": "equal", "value": 1}]}, 400, "target"),
        ({"success": [], "then": []}, 400, "unknown field"),
    ],
)
def test_bad_txns_are_refused_and_change_nothing(
    c: Cluster, body: Any, status: int, words: str
) -> None:
    leader = c.leader()
    before = listing(c, leader, "count_only=true").json()["revision"]
    r = txn(c, leader, body)
    assert r.status == status and words in r.json()["message"], r
    assert listing(c, leader, "count_only=true").json()["revision"] == before
    assert c.get(leader, "bad/txn").status == 404


def test_ranges_cursor_and_count_only(c: Cluster) -> None:
    leader = c.leader()
    for k in ("r/a", "r/b", "r/c", "r/d", "s"):
        assert c.put(leader, k, "v").status == 200
    node = others(c, leader)[1]
    r = listing(c, node, "start=r/b&end=r/d")
    assert [x["key"] for x in r.json()["items"]] == ["r/b", "r/c"]
    seen, cursor = [], ""
    for _ in range(10):
        page = listing(c, node, f"start=r/&end=r0&limit=2{cursor}").json()
        seen += [x["key"] for x in page["items"]]
        if not page["more"]:
            break
        cursor = "&start_after=" + quote(seen[-1])
    assert seen == ["r/a", "r/b", "r/c", "r/d"]
    counted = listing(c, node, "prefix=r/&count_only=true").json()
    assert counted["count"] == 4 and "items" not in counted
    assert listing(c, node, "start=r/b&end=r0&count_only=true&start_after=r/c").json()["count"] == 1
    assert listing(c, node, "start=r/d&end=r/a&count_only=true").json()["count"] == 0
    both = listing(c, node, "prefix=r/&start=r/b&end=s").json()["items"]
    assert [x["key"] for x in both] == ["r/b", "r/c", "r/d"]  # under the prefix and in range
    for query, words in (
        ("count_only=yes", "true or false"),
        ("end=%01", "control character"),
    ):
        r = listing(c, node, query)
        assert r.status == 400 and words in r.json()["message"], (query, r)


def test_racing_txns_exactly_one_wins_each_round(c: Cluster) -> None:
    """Two clients, each on its own node, read the lock key's mod_revision and race a txn that
    takes it only if nobody wrote it since: every round exactly one of them wins."""
    leader = c.leader()
    clients = others(c, leader)
    for round_no in range(10):
        seen = c.put(leader, "race/lock", f"round-{round_no}").json()["mod_revision"]
        answers: dict[int, Response] = {}
        start = threading.Barrier(len(clients))

        def contend(
            node: int,
            seen: int = seen,
            start: threading.Barrier = start,
            answers: dict[int, Response] = answers,
        ) -> None:
            body = {
                "compare": [
                    {"key": "race/lock", "target": "mod_revision", "op": "equal", "value": seen}
                ],
                "success": [
                    {"op": "put", "key": "race/lock", "value": f"node-{node}"},
                    {"op": "put", "key": "race/owner", "value": f"node-{node}"},
                ],
                "failure": [{"op": "get", "key": "race/lock"}],
            }
            start.wait(timeout=10)
            answers[node] = txn(c, node, body)

        threads = [threading.Thread(target=contend, args=(n,)) for n in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=15)
        assert all(answers[n].status == 200 for n in clients), answers
        winners = [n for n in clients if answers[n].json()["succeeded"]]
        assert len(winners) == 1, (round_no, answers)
        loser = next(n for n in clients if n not in winners)
        assert answers[loser].json()["results"][0]["value"] == f"node-{winners[0]}"
        for node in (1, 2, 3):
            assert c.get(node, "race/owner").json()["value"] == f"node-{winners[0]}"
