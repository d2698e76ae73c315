"""roles/nginx's configuration in front of a real three-node cluster on loopback: the Lua checks
find the leader, writes go to it and reads spread, a killed leader costs keyed writes a short
window and nothing else, a reload keeps the checked state, and with no node left nginx answers
the nodes' JSON 503 itself. Skipped unless ``.venv/nginx`` holds Debian's nginx
(make test-nginx)."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.peers import nginx as local_nginx
from raftnode.devcluster import free_ports
from tests.integration.cluster import Cluster, http, running
from tests.stalled_leader import (
    assert_never_nothing_was_done_and_applied,
    keyed_writes_to_a_stalled_leader,
)

pytestmark = pytest.mark.skipif(
    not local_nginx.available(),
    reason="Debian's nginx not unpacked in .venv/nginx (make test-nginx)",
)


def metric(text: str, series: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def metric_sum(text: str, name: str) -> float:
    pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", re.MULTILINE)
    return sum(float(v) for v in pattern.findall(text))


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with running() as c:
        c.leader()
        yield c


@pytest.fixture(scope="module")
def nginx(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[local_nginx.LocalNginx]:
    directory: Path = tmp_path_factory.mktemp("nginx")
    port, status_port = free_ports(2)
    servers: list[dict[str, object]] = [
        {
            "name": f"n{n.ports.node_id}",
            "address": "127.0.0.1",
            "port": n.ports.client,
            "health_port": n.ports.health,
        }
        for n in cluster.nodes
    ]
    proc = local_nginx.prepare(directory, servers, port, status_port)
    checked = proc.check()
    assert checked.returncode == 0, checked.stderr
    proc.start()
    try:
        cluster.wait_for(
            "nginx's checker finds the leader",
            lambda: metric(scrape(proc), "raftnode_balancer_write_servers") == 1,
            timeout=20.0,
        )
        yield proc
    finally:
        proc.stop()
        print(proc.error_log())


def scrape(proc: local_nginx.LocalNginx) -> str:
    r = http("GET", f"http://127.0.0.1:{proc.status_port}/metrics", timeout=2.0)
    return r.body.decode() if r.status == 200 else ""


def base(proc: local_nginx.LocalNginx) -> str:
    return f"http://127.0.0.1:{proc.port}"


def node_metric(cluster: Cluster, name: str) -> dict[int, float]:
    return {
        n.ports.node_id: metric_sum(http("GET", n.health_url + "/metrics").body.decode(), name)
        for n in cluster.nodes
    }


def test_the_checker_sees_one_leader_and_every_node_ready(nginx: local_nginx.LocalNginx) -> None:
    text = scrape(nginx)
    assert metric(text, "raftnode_balancer_write_servers") == 1, text
    ready = re.findall(r'raftnode_balancer_server_up\{check="readiness",server="n\d"\} (\S+)', text)
    assert ready == ["1", "1", "1"], text
    assert http("GET", base(nginx) + "/nginx-health").status == 200
    assert (
        b"Active connections"
        in http("GET", f"http://127.0.0.1:{nginx.status_port}/stub_status").body
    )


def test_writes_go_to_the_leader_and_reads_spread(
    cluster: Cluster, nginx: local_nginx.LocalNginx
) -> None:
    forwarded = node_metric(cluster, "raftnode_forwarded_requests_total")
    reads = node_metric(cluster, "raftnode_read_seconds_count")
    for i in range(10):
        assert http("POST", base(nginx) + "/kv", {"key": f"route-{i}", "value": "v"}).status == 200
        assert http("PUT", base(nginx) + f"/kv/route-put-{i}", {"value": "v"}).status == 200
    for _ in range(30):
        r = http("GET", base(nginx) + "/kv/route-0")
        assert r.status == 200 and r.json()["value"] == "v", r
    assert node_metric(cluster, "raftnode_forwarded_requests_total") == forwarded
    after = node_metric(cluster, "raftnode_read_seconds_count")
    served = {n: after[n] - reads[n] for n in after}
    assert all(count >= 5 for count in served.values()), served


def test_errors_of_the_nodes_pass_through_unchanged(nginx: local_nginx.LocalNginx) -> None:
    r = http("GET", base(nginx) + "/kv/never-written")
    assert r.status == 404 and r.json()["error"] == "not_found", r
    r = http("POST", base(nginx) + "/kv", raw=b"{not json")
    assert r.status == 400, r
    r = http("POST", base(nginx) + "/kv", raw=b"x" * (9 << 20))
    assert r.status == 413 and r.json()["error"] == "too_large", r


def test_the_admin_api_is_closed_on_the_balancer(
    cluster: Cluster, nginx: local_nginx.LocalNginx
) -> None:
    for path in ("/admin/v1/members", "/admin", "/admin/v1/leader/transfer"):
        r = http("POST" if path.endswith("transfer") else "GET", base(nginx) + path)
        assert r.status == 403 and r.json()["error"] == "forbidden", (path, r)
    r = http("GET", base(nginx) + "/administrator-notes")  # only /admin itself is closed
    assert r.status in (404, 400), r
    assert http("GET", cluster.url(1, "/admin/v1/members")).status == 200


def test_a_reload_keeps_the_checked_state(nginx: local_nginx.LocalNginx) -> None:
    nginx.reload()
    time.sleep(0.3)  # the new workers answer; the checker has not had to run again
    text = scrape(nginx)
    assert metric(text, "raftnode_balancer_write_servers") == 1, text
    assert "-1" not in re.findall(r"raftnode_balancer_server_up\{[^}]*\} (\S+)", text), text


def test_keyed_writes_survive_a_leader_kill(
    cluster: Cluster, nginx: local_nginx.LocalNginx
) -> None:
    acks: list[tuple[float, str, int]] = []
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            key = f"kill-{n}"
            while not stop.is_set():  # the same key until acknowledged, as fault_rounds does
                r = http(
                    "POST",
                    base(nginx) + "/kv",
                    {"key": key, "value": key},
                    timeout=3.0,
                    headers={"Idempotency-Key": key},
                )
                acks.append((time.monotonic(), key, r.status))
                if r.status == 200:
                    break
                time.sleep(0.01)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    time.sleep(1.0)
    leader = cluster.leader()
    killed_at = time.monotonic()
    cluster.kill(leader)
    time.sleep(3.0)
    stop.set()
    writer.join(10)
    ok = [t for t, _, status in acks if status == 200]
    before = [t for t in ok if t < killed_at][-1:]
    after = [t for t in ok if t >= killed_at]
    assert after, acks[-5:]
    window = max(b - a for a, b in zip(before + after, after, strict=False))
    print(
        f"nginx, leader SIGKILL on loopback: window {window * 1000:.0f} ms, "
        f"{sum(1 for _, _, s in acks if s != 200)} failed attempts of {len(acks)}"
    )
    assert window < 5.0
    for _, key, status in acks:
        if status == 200:
            r = http("GET", base(nginx) + f"/kv/{key}")
            assert r.status == 200 and r.json()["value"] == key, (key, r)
    cluster.start(leader)
    cluster.wait_for(
        "the old leader ready again", lambda: cluster.health(leader, "/readiness").status == 200, 30
    )


def test_a_keyed_write_sent_to_a_leader_that_stalls_is_never_answered_nothing_was_done(
    cluster: Cluster, nginx: local_nginx.LocalNginx
) -> None:
    """As tests/haproxy: the keyed location's refusal after a retry is 504, never 503."""
    results = keyed_writes_to_a_stalled_leader(cluster, base(nginx))
    assert_never_nothing_was_done_and_applied(results)
    assert any(applied == 200 for _, _, applied in results), "no write reached the leader"
    cluster.wait_for(
        "every node ready again",
        lambda: all(cluster.health(n, "/readiness").status == 200 for n in (1, 2, 3)),
        30,
    )


def test_with_no_node_left_nginx_answers_the_json_503(
    cluster: Cluster, nginx: local_nginx.LocalNginx
) -> None:
    for n in cluster.nodes:
        cluster.kill(n.ports.node_id)
    cluster.wait_for(
        "nginx's checks see every node down",
        lambda: (
            re.findall(
                r'raftnode_balancer_server_up\{check="(?:live|readiness)",server="n\d"\} 0',
                scrape(nginx),
            ).__len__()
            == 6
        ),
        timeout=10.0,
    )
    for method, path, body in (("POST", "/kv", {"key": "k", "value": "v"}), ("GET", "/kv/k", None)):
        r = http(method, base(nginx) + path, body)
        assert r.status == 503, r
        assert r.json()["error"] == "unavailable", r
        assert r.headers.get("Retry-After") == "1", r.headers


def test_workers_exit_when_their_master_is_killed(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Where systemd cannot kill a killed master's control group, orphaned workers would hold
    the ports and the restarted nginx could not bind them: each worker exits by itself."""
    directory: Path = tmp_path_factory.mktemp("nginx-orphans")
    port, status_port = free_ports(2)
    servers: list[dict[str, object]] = [{"name": "n1", "address": "127.0.0.1", "port": 1}]
    proc = local_nginx.prepare(directory, servers, port, status_port)
    proc.start()
    master = proc.master_pid()
    workers = [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _ppid(int(p.name)) == master
    ]
    assert workers, "no workers"
    os.kill(master, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.05)
    alive = [w for w in workers if Path(f"/proc/{w}").exists()]
    for w in alive:
        os.kill(w, signal.SIGKILL)
    assert not alive, "workers outlived their master"


def _ppid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[1])
