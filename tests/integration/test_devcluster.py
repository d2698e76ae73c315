"""`make start-cluster`'s report: a node that cannot start is named, with its own log line."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from raftnode.devcluster import NodePorts, free_ports, start_cluster, stop_all, write_configs


def _ports(n: int) -> list[NodePorts]:
    p = free_ports(3 * n)
    return [NodePorts(i + 1, p[3 * i], p[3 * i + 1], p[3 * i + 2]) for i in range(n)]


def test_a_node_whose_port_is_taken_is_named_and_start_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = write_configs(tmp_path, _ports(3))
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", nodes[1].ports.client))
        squatter.listen()
        try:
            assert start_cluster(nodes, timeout=20, base=tmp_path) == 1
        finally:
            stop_all(tmp_path, timeout=5)
    out, err = capsys.readouterr()
    assert "node 2 failed to start" in err, err
    assert "startup failed" in err and "in use" in err, err
    assert "started node 2" not in out and "leader:" not in out, out
    assert "node 1 failed" not in err and "node 3 failed" not in err, err


def test_a_healthy_cluster_reports_every_node_and_the_leader(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = write_configs(tmp_path, _ports(3))
    try:
        assert start_cluster(nodes, timeout=20, base=tmp_path) == 0
    finally:
        stop_all(tmp_path, timeout=5)
    out, _ = capsys.readouterr()
    for i in (1, 2, 3):
        assert f"started node {i} (pid " in out, out
    assert "leader: node " in out, out
