"""The series raftnode/metrics.py adds for the alert rules, without a cluster."""

from __future__ import annotations

import raftnode
from raftnode.metrics import NodeMetrics
from raftnode.raft.types import Message, MessageType


def sample(m: NodeMetrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return m.registry.get_sample_value(name, labels or {})


def heartbeat(to: int, context: int) -> Message:
    return Message(MessageType.HEARTBEAT, to=to, frm=1, term=1, context=context)


def response(frm: int, context: int) -> Message:
    return Message(MessageType.HEARTBEAT_RESP, to=1, frm=frm, term=1, context=context)


def test_build_info_process_and_has_leader() -> None:
    m = NodeMetrics()
    assert sample(m, "raftnode_build_info", {"version": raftnode.__version__}) == 1.0
    assert (sample(m, "process_resident_memory_bytes") or 0) > 0
    m.set_leader(0)
    assert sample(m, "raftnode_has_leader") == 0.0
    m.set_leader(3)
    assert sample(m, "raftnode_has_leader") == 1.0
    assert sample(m, "raftnode_leader_id") == 3.0


def test_lag_series_cleared_when_the_node_stops_leading() -> None:
    m = NodeMetrics()
    m.set_role("leader")
    m.replication_lag.labels(peer="2").set(5)
    m.set_role("leader")
    assert sample(m, "raftnode_replication_lag_entries", {"peer": "2"}) == 5.0
    m.set_role("follower")
    assert sample(m, "raftnode_replication_lag_entries", {"peer": "2"}) is None


def test_round_trip_matches_the_echoed_heartbeat() -> None:
    m = NodeMetrics()
    count = {"peer": "2"}
    m.heartbeats_sent([heartbeat(2, 7), heartbeat(3, 7)])
    m.heartbeats_sent([heartbeat(2, 8)])  # the oldest unanswered one is kept
    m.heartbeat_answered(response(2, 8))
    assert sample(m, "raftnode_peer_round_trip_seconds_count", count) is None
    m.heartbeat_answered(response(2, 7))
    assert sample(m, "raftnode_peer_round_trip_seconds_count", count) == 1.0
    m.heartbeat_answered(response(2, 7))  # a duplicate counts once
    assert sample(m, "raftnode_peer_round_trip_seconds_count", count) == 1.0
    m.forget_peer(2)
    m.forget_peer(9)  # never seen: no error
    assert sample(m, "raftnode_peer_round_trip_seconds_count", count) is None
