"""A deliberately broken raftnode (``raftnode.failpoints``) must be caught by the chaos checker:
a node that answers linearizable reads without a ReadIndex round serves a value the cluster
has overwritten, and the linearizability checker reports it. The same steps on a healthy node
refuse the read instead."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chaos.history import Operation
from chaos.linearizability import check
from raftnode.failpoints import ENVIRONMENT_VARIABLE, READS_SKIP_READ_INDEX
from tests.integration.cluster import Cluster, running


def _cut_off_with_an_old_value(c: Cluster, ops: list[Operation]) -> int:
    """v1 everywhere, then v2 acknowledged while one node is down; then that node alone is up
    (the two that hold v2 are killed). Returns the node cut off with v1."""
    t = 0.0

    def write(nodes: list[int], value: str) -> None:
        nonlocal t
        r = c.put_retrying(nodes, "k", value)
        assert r.status == 200, r
        ops.append(Operation("1", "put", t, t + 1.0, "ok", key="k", value=value))
        t += 2.0

    leader = c.leader()
    write([leader], "v1")
    c.wait_for("n3 applied v1", lambda: c.get(3, "k", "stale").status == 200)
    c.kill(3)
    write([1, 2], "v2")
    c.kill(1)
    c.kill(2)
    c.start(3)
    c.wait_for("n3 serving", lambda: c.get(3, "k", "stale").status == 200, timeout=20.0)
    return 3


def test_a_node_that_skips_the_read_index_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, READS_SKIP_READ_INDEX)
    with running() as c:
        assert c.status(1)["failpoints"] == [READS_SKIP_READ_INDEX]
        ops: list[Operation] = []
        node = _cut_off_with_an_old_value(c, ops)
        answer = c.get(node, "k", "linearizable")
        assert answer.status == 200 and answer.json()["value"] == "v1", answer
        ops.append(Operation("2", "get", 10.0, 11.0, "ok", key="k", result="v1"))
    result = check(ops)
    assert result.valid is False
    assert {op.value or op.result for op in result.anomalies[0].witness} >= {"v2", "v1"}


def test_a_healthy_node_refuses_the_same_read() -> None:
    with running() as c:
        assert "failpoints" not in c.status(1)
        node = _cut_off_with_an_old_value(c, [])
        answer = c.get(node, "k", "linearizable")
        assert answer.status == 503, answer


def test_an_unknown_failpoint_stops_the_start() -> None:
    c = Cluster(1)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "raftnode.cli", "serve", "--config", str(c.node(1).config)],
            env={ENVIRONMENT_VARIABLE: "no-such-fault", "PATH": "/usr/bin:/bin"},
            capture_output=True,
            timeout=30,
        )
    finally:
        c.close()
    assert done.returncode == 2
    assert b"unknown failpoints ['no-such-fault']" in done.stderr + done.stdout
