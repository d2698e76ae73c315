"""Pure parts of the harness: the HAProxy config rewrite and the growing run's pacing."""

import argparse
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from bench.peers.haproxy import LOCAL_CFG, haproxy_argv, render_config
from bench.preload import put_request
from bench.scale_bench import GrowingRun, next_chunk_seconds
from raftnode.cpu_scheduling import current_policy
from raftnode.devcluster import free_ports


def test_haproxy_config_uses_the_clusters_ports_on_loopback() -> None:
    ports = {1: (21001, 22001), 2: (21002, 22002), 3: (21003, 22003)}
    text = render_config(LOCAL_CFG.read_text(), ports, bind=23000, stats=23001)
    assert "bind 127.0.0.1:23000" in text
    assert "bind 127.0.0.1:23001" in text
    assert "server n2 127.0.0.1:21002 check port 22002" in text
    config = "\n".join(line.split("#")[0] for line in text.splitlines())
    assert ":8080" not in config and ":8081" not in config and "10001" not in config


def test_haproxy_config_accepts_free_ports_that_contain_808() -> None:
    ports = {1: (18081, 28080), 2: (18082, 38089), 3: (48083, 58087)}
    text = render_config(LOCAL_CFG.read_text(), ports, bind=18080, stats=40808)
    assert "server n3 127.0.0.1:48083 check port 58087" in text


def test_haproxy_config_refuses_a_template_it_cannot_rewrite() -> None:
    with pytest.raises(ValueError):
        render_config("server n1 127.0.0.1:8081 check", {}, bind=1, stats=2)


def _thread_policies(pid: int) -> set[int]:
    return {current_policy(task / "stat") for task in Path(f"/proc/{pid}/task").iterdir()}


@pytest.mark.parametrize("policy, expected", [("batch", os.SCHED_BATCH), ("inherit", None)])
def test_haproxy_runs_under_the_policy_asked_for(
    tmp_path: Path, policy: str, expected: int | None
) -> None:
    """As the haproxy role runs it (CPUSchedulingPolicy=batch): every thread SCHED_BATCH."""
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed")
    (port,) = free_ports(1)
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        "global\n    nbthread 2\ndefaults\n    mode http\n    timeout connect 1s\n"
        f"    timeout client 1s\n    timeout server 1s\nfrontend f\n    bind 127.0.0.1:{port}\n"
        "    http-request return status 200\n"
    )
    proc = subprocess.Popen(haproxy_argv(cfg, policy), stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while len(list(Path(f"/proc/{proc.pid}/task").iterdir())) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "haproxy did not start"
            time.sleep(0.05)
        policies = _thread_policies(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
    assert policies == ({expected} if expected is not None else _thread_policies(os.getpid()))
    with pytest.raises(ValueError, match="batch or inherit, got 'fifo'"):
        haproxy_argv(cfg, "fifo")


def test_etcd_writes_are_base64_and_others_plain_json() -> None:
    path, body = put_request("etcd", "bench-1", "xy")
    assert path == "/v3/kv/put"
    assert body == b'{"key": "YmVuY2gtMQ==", "value": "eHk="}'
    assert put_request("raftnode", "k", "v") == ("/kv", b'{"key": "k", "value": "v"}')


def test_chunks_are_whole_intervals_shortened_only_by_the_time_budget() -> None:
    run = GrowingRun("raftnode", cluster=argparse.Namespace())
    assert next_chunk_seconds(run, interval=10, duration=240) == 10
    run.keys, run.load_s = 9000, 9.0
    assert next_chunk_seconds(run, interval=10, duration=240) == 10
    run.load_s = 238.0
    assert next_chunk_seconds(run, interval=10, duration=240) == 2
    run.load_s = 239.9
    assert next_chunk_seconds(run, interval=10, duration=240) == 1


def test_leader_changes_count_each_switch() -> None:
    run = GrowingRun("etcd", cluster=argparse.Namespace())
    run.leaders_seen = [1, 1, 2, 2, 1]
    assert run.leader_changes == 2


def test_a_row_side_with_its_own_load_runs_it_instead_of_wrk() -> None:
    import argparse

    from bench.peers_bench import PeerBench, Target
    from bench.wrkrun import WrkResult

    calls: list[tuple[int, float]] = []

    def client_load(connections: int, seconds: float) -> WrkResult:
        calls.append((connections, seconds))
        return WrkResult(2.0, 200, 200, 0, 0, {"p50": 1000.0, "p99": 5000.0})

    def no_wrk() -> str:
        raise AssertionError("wrk's URL was asked for a side that runs its own load")

    bench = PeerBench(argparse.Namespace(rounds=2, seconds=2.0))
    side = Target("raftnode.client async", no_wrk, {}, lambda: None, run=client_load)
    row = bench.measure("write client async vs itself", 64, side, side)
    assert calls == [(64, 2.0)] * 4
    assert row.a.rate == 100.0 and row.a.p99 == 5.0
