"""Client API and health endpoints against a running three-node cluster (no node killed)."""

from __future__ import annotations

import json
import socket
import struct
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.integration.cluster import Cluster, http


def others(c: Cluster, leader: int) -> list[int]:
    return [i for i in (1, 2, 3) if i != leader]


def test_one_leader_and_health_endpoints(shared_cluster: Cluster) -> None:
    c = shared_cluster
    leader = c.leader()
    for i in (1, 2, 3):
        primary = c.health(i, "/primary").status
        assert primary == (200 if i == leader else 503)
        for method in ("HEAD", "OPTIONS"):
            assert c.health(i, "/primary", method).status == primary
        assert c.health(i, "/health").status == 200
    for i in others(c, leader):
        c.wait_for("replica 200", lambda i=i: c.health(i, "/replica").status == 200)
        assert c.health(i, "/replica?lag=0", "OPTIONS").status in (200, 503)
        c.wait_for("readiness", lambda i=i: c.health(i, "/readiness").status == 200)
    assert c.health(leader, "/replica").status == 503
    assert c.health(leader, "/replica?lag=x").status == 400
    status = c.status(leader)
    for key in ("id", "role", "term", "leader", "commit", "applied", "peers"):
        assert key in status
    assert status["role"] == "leader" and status["leader"] == leader
    assert {p["id"] for p in status["peers"]} == set(others(c, leader))
    assert all("lag" in p for p in status["peers"])
    metrics = c.health(leader, "/metrics").body.decode()
    for name in (
        "raftnode_term",
        "raftnode_role",
        "raftnode_commit_index",
        "raftnode_applied_index",
        "raftnode_fsync_seconds",
        "raftnode_replication_lag_entries",
        "raftnode_health_request_seconds",
        "raftnode_leader_changes_total",
        "raftnode_elections_total",
    ):
        assert name in metrics, name


def test_write_replicates_and_reads_at_every_level(shared_cluster: Cluster) -> None:
    c = shared_cluster
    leader = c.leader()
    r = c.put(leader, "username", "alice")
    assert r.status == 200, r
    assert r.json()["revision"] >= 1
    for i in (1, 2, 3):
        # linearizable (the default) and lease see the write at once on every node
        for consistency in (None, "linearizable", "lease"):
            r = c.get(i, "username", consistency)
            assert r.status == 200, (i, consistency, r)
            assert r.json()["value"] == "alice"
        c.wait_for(
            "stale read", lambda i=i: c.get(i, "username", "stale").json().get("value") == "alice"
        )


def test_write_at_follower_is_forwarded(shared_cluster: Cluster) -> None:
    c = shared_cluster
    leader = c.leader()
    follower = others(c, leader)[0]
    r = c.put(follower, "fwd", "v1")
    assert r.status == 200, r
    assert r.headers.get("X-Raftnode-Forwarded-To") == str(leader)
    r = http("PUT", c.url(follower, "/kv/fwd"), {"value": "v2"})
    assert r.status == 200, r
    assert c.get(follower, "fwd").json()["value"] == "v2"


def test_compare_and_set(shared_cluster: Cluster) -> None:
    c = shared_cluster
    node = c.leader()
    url = c.url(node, "/kv")
    assert http("POST", url, {"key": "cas", "value": "1", "prev_value": None}).status == 200
    r = http("POST", url, {"key": "cas", "value": "2", "prev_value": None})
    assert r.status == 409 and r.json()["current_value"] == "1", r
    r = http("PUT", c.url(node, "/kv/cas"), {"value": "2", "prev_value": "wrong"})
    assert r.status == 409 and r.json()["current_value"] == "1"
    follower = others(c, node)[0]
    r = http("PUT", c.url(follower, "/kv/cas"), {"value": "2", "prev_value": "1"})
    assert r.status == 200, r
    assert c.get(follower, "cas").json()["value"] == "2"


def test_delete(shared_cluster: Cluster) -> None:
    c = shared_cluster
    follower = others(c, c.leader())[0]
    assert c.put(follower, "gone", "x").status == 200
    r = http("DELETE", c.url(follower, "/kv/gone"))
    assert r.status == 200 and r.json()["prev_value"] == "x", r
    for i in (1, 2, 3):
        assert c.get(i, "gone").status == 404
        assert c.get(i, "gone").json()["error"] == "not_found"
    assert http("DELETE", c.url(follower, "/kv/gone")).status == 404
    assert c.put(follower, "gone", "y").status == 200
    assert http("DELETE", c.url(follower, "/kv/gone?prev_value=nope")).status == 409
    assert http("DELETE", c.url(follower, "/kv/gone?prev_value=y")).status == 200


def test_prefix_list(shared_cluster: Cluster) -> None:
    c = shared_cluster
    leader = c.leader()
    for i in range(5):
        assert c.put(leader, f"list/{i}", str(i)).status == 200
    assert c.put(leader, "listx", "other").status == 200
    node = others(c, leader)[1]
    r = http("GET", c.url(node, "/kv?prefix=list/"))
    assert r.status == 200
    body = r.json()
    assert [it["key"] for it in body["items"]] == [f"list/{i}" for i in range(5)]
    assert body["more"] is False
    r = http("GET", c.url(node, "/kv?prefix=list/&limit=2&consistency=stale"))
    assert [it["key"] for it in r.json()["items"]] == ["list/0", "list/1"]
    assert r.json()["more"] is True


BAD_REQUESTS = [
    ("POST", "/kv", b"{not json", 400, "bad_json"),
    ("POST", "/kv", b"", 400, "bad_json"),
    ("POST", "/kv", b"[1, 2]", 400, "bad_json"),
    ("POST", "/kv", b'{"value": "v"}', 400, "bad_key"),
    ("POST", "/kv", b'{"key": 5, "value": "v"}', 400, "bad_key"),
    ("POST", "/kv", b'{"key": "", "value": "v"}', 400, "bad_key"),
    ("POST", "/kv", b'{"key": "k"}', 400, "bad_value"),
    ("POST", "/kv", b'{"key": "k", "value": 12}', 400, "bad_value"),
    ("POST", "/kv", b'{"key": "k", "value": null}', 400, "bad_value"),
    ("POST", "/kv", b'{"key": "k", "value": "v", "prev_value": 3}', 400, "bad_value"),
    ("POST", "/kv", b'{"key": "k", "value": "v", "ttl": 3}', 400, "bad_field"),
    ("POST", "/kv", b'{"key": "' + b"k" * 1025 + b'", "value": "v"}', 413, "too_large"),
    ("POST", "/kv", b'{"key": "k", "value": "' + b"v" * ((1 << 20) + 1) + b'"}', 413, "too_large"),
    ("POST", "/kv", b'{"key": "k", "value": "' + b"v" * (3 << 20) + b'"}', 413, "too_large"),
    ("PUT", "/kv/k", b'{"key": "other", "value": "v"}', 400, "bad_key"),
    ("PUT", "/kv/k", b"nope", 400, "bad_json"),
    ("GET", "/kv/k?consistency=eventual", None, 400, "bad_param"),
    ("GET", "/kv?limit=0", None, 400, "bad_param"),
    ("GET", "/kv?limit=abc", None, 400, "bad_param"),
    ("GET", "/kv/k?bogus=1", None, 400, "bad_param"),
    ("GET", "/nothing/here", None, 404, "no_route"),
    ("PATCH", "/kv/k", b"{}", 405, "method_not_allowed"),
]


@pytest.mark.parametrize(("method", "path", "raw", "status", "code"), BAD_REQUESTS)
def test_bad_input_is_refused_and_changes_nothing(
    shared_cluster: Cluster, method: str, path: str, raw: bytes | None, status: int, code: str
) -> None:
    c = shared_cluster
    leader = c.leader()
    before = c.status(leader)["commit"]
    for node in (leader, others(c, leader)[0]):
        r = http(method, c.url(node, path), raw=raw)
        assert r.status == status, r
        body = r.json()
        assert body["error"] == code, body
        assert body["message"]
    assert c.status(leader)["commit"] == before
    assert c.get(leader, "k").status == 404


def _handshake_as_stranger(port: int, secret: bytes) -> bytes:
    """Dial the peer port claiming to be node 2 with the given secret; return what came back."""
    from raftnode.transport.auth import LEGACY_MAGIC

    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(LEGACY_MAGIC + struct.pack(">QQ", 2, 1) + b"n" * 32 + bytes(16))
        reply = s.recv(88)
        if len(reply) < 88:
            return reply
        s.sendall(b"\0" * 32)  # a wrong proof
        s.settimeout(5)
        try:
            return s.recv(1)
        except OSError:
            return b""


def test_stranger_on_peer_port_is_refused(shared_cluster: Cluster) -> None:
    c = shared_cluster
    leader = c.leader()
    term = c.status(leader)["term"]
    n1_peer = c.node(1).ports.peer
    # garbage, then a handshake with a wrong proof, then an APPEND frame without any handshake
    with socket.create_connection(("127.0.0.1", n1_peer), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\0" * 200)
        s.settimeout(5)
        assert s.recv(100) == b""  # closed on us
    assert _handshake_as_stranger(n1_peer, b"wrong") == b""
    from raftnode.raft.types import Message, MessageType
    from raftnode.transport.codec import encode_message, frame

    vote = Message(MessageType.VOTE, to=1, frm=2, term=term + 50, index=10**6, log_term=term + 50)
    with socket.create_connection(("127.0.0.1", n1_peer), timeout=5) as s:
        s.sendall(frame(encode_message(vote)) * 3)
        s.settimeout(5)
        assert s.recv(100) == b""
    time.sleep(0.5)
    c.wait_for("refusals logged", lambda: c.log(1).count("peer connection refused") >= 3, timeout=5)
    assert c.leader() == leader
    assert c.status(1)["term"] == term  # no vote was taken, no term change
    metrics = c.health(1, "/metrics").body.decode()
    line = next(
        x for x in metrics.splitlines() if x.startswith("raftnode_peer_connections_refused_total")
    )
    assert float(line.split()[-1]) >= 3


def _post_with_key(url: str, body: dict[str, str], key: str) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    req.add_header("Idempotency-Key", key)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_a_write_retried_with_its_idempotency_key_applies_once(shared_cluster: Cluster) -> None:
    c = shared_cluster
    leader = c.leader()
    follower = others(c, leader)[0]
    body = {"key": "idem", "value": "first"}
    status, headers, first = _post_with_key(c.url(leader, "/kv"), body, "client-7-write-1")
    assert status == 200 and "Idempotent-Replayed" not in headers
    assert c.put(leader, "idem", "second").status == 200
    # The retry, this time through a follower (forwarded to the leader with its key).
    status, headers, again = _post_with_key(c.url(follower, "/kv"), body, "client-7-write-1")
    assert status == 200 and headers.get("Idempotent-Replayed") == "true"
    assert again["revision"] == first["revision"]
    for node in (1, 2, 3):
        assert c.get(node, "idem").json()["value"] == "second"
    status, _, bad = _post_with_key(c.url(leader, "/kv"), body, "has space")
    assert status == 400 and "Idempotency-Key" in bad["message"]
