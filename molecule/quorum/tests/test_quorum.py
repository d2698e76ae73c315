"""Without a quorum the cluster answers fast and takes nothing; with a majority back it writes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "default"))

import lab_probe

LAB = lab_probe.load_lab()
# request_timeout_ms is 5 s: an answer must come well before a client would give up.
ANSWER_BOUND_S = 12.0


def report() -> dict:
    return json.loads(lab_probe.ephemeral("quorum.json").read_text())


def test_the_survivor_refuses_writes_quickly() -> None:
    write = report()["write_direct"]
    assert write["status"] == 503, write
    assert write["retry_after"] is not None, write
    assert write["seconds"] < ANSWER_BOUND_S, write


def test_the_vip_refuses_writes_quickly() -> None:
    write = report()["write_via_vip"]
    assert write["status"] == 503, write
    assert write["retry_after"] is not None, write  # HAProxy's own 503 says when to retry too
    assert write["seconds"] < ANSWER_BOUND_S, write


def test_the_survivor_refuses_linearizable_reads() -> None:
    read = report()["read_direct"]
    assert read["status"] == 503, read
    assert read["seconds"] < ANSWER_BOUND_S, read


def test_the_survivor_tells_the_balancer_it_cannot_lead_or_serve() -> None:
    health = report()["health"]
    assert health["primary"] == 503, health
    assert health["readiness"] == 503, health
    assert health["health"] == 200, health  # the process and its disk are fine


def test_a_majority_writes_again() -> None:
    recovered = report()["recovered"]
    assert recovered["ok"], recovered
    assert recovered["seconds"] < 30, recovered


def test_nothing_refused_was_written() -> None:
    status, _, _ = lab_probe.request(f"{LAB.vip_url}/kv/during-outage")
    assert status == 404


def test_all_nodes_back_with_one_leader() -> None:
    codes = lab_probe.primary_codes(list(LAB.raft.values()))
    assert sorted(codes.values()) == [200, 503, 503], codes
