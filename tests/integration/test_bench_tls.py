"""The benchmark's TLS raftnode cluster: HTTPS on the client port, mutual TLS between peers,
and a write sent to a follower forwarded to the leader and read back, all verified."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.peers.raftnode import RaftnodeCluster
from bench.peers.tls import make_bench_tls, trust_in_process
from bench.preload import write_one
from bench.procs import ProcessGroup, request_json


@pytest.mark.timeout(120)
def test_tls_cluster_serves_https_and_replicates_over_mutual_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = make_bench_tls(tmp_path / "tls", [1, 2, 3], [])
    monkeypatch.setenv("SSL_CERT_FILE", "")  # restored after the test
    trust_in_process(tls.ca_file)
    with ProcessGroup() as procs:
        cluster = RaftnodeCluster(tmp_path / "raft", procs, tls=tls)
        cluster.start()
        follower = cluster.follower_url()
        assert follower.startswith("https://127.0.0.1:")
        assert write_one(follower, "raftnode", "tls-key", "tls-value") == 200
        for node in cluster.nodes:
            status, body = request_json(node.client_url + "/kv/tls-key?consistency=linearizable")
            assert status == 200 and isinstance(body, dict), node.client_url
            assert body["value"] == "tls-value", node.client_url
        # Every peer connection was accepted: the bench certificates pass the peer checks.
        assert all("peer connection refused" not in n.log_file.read_text() for n in cluster.nodes)
