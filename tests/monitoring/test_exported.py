"""Every metric the alert rules and the dashboard use is exported by a live node, HAProxy or nginx.

A real three-node cluster on loopback (free ports) and, when haproxy is installed, a local
HAProxy with files/haproxy-local.cfg on free loopback ports (bench/peers/haproxy.py rewrites
them). Each node's and HAProxy's /metrics is scraped; every name from tests/monitoring/promql.py
must be among them. Also checks the series added for the rules: build info, has_leader, the
process collector, peer round trip, and the lag series a former leader drops.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import raftnode
from raftnode.devcluster import free_ports
from tests.integration.cluster import Cluster, http, running
from tests.monitoring.promql import REPO, SCRAPE_SERIES, exported_names, used_metrics

LOCAL_CFG = REPO / "files" / "haproxy-local.cfg"
NGINX_LUA = REPO / "roles" / "nginx" / "files" / "raftnode_balancer.lua"
# Metrics the balancers export, not the nodes: HAProxy's exporter and roles/nginx's checker.
BALANCER_PREFIXES = ("haproxy_", "raftnode_balancer_")


def render_config(ports: dict[int, tuple[int, int]], bind: int, stats: int) -> str:
    """files/haproxy-local.cfg with node N's 808N/1000N replaced by ``ports[N]`` (client,
    health) and both listeners on free loopback ports."""

    def server(m: re.Match[str]) -> str:
        client, health = ports[int(m.group(1))]
        return f"server n{m.group(1)} 127.0.0.1:{client} check port {health}"

    text, servers = re.subn(
        r"server n(\d) 127\.0\.0\.1:808\1 check port 1000\1", server, LOCAL_CFG.read_text()
    )
    text, binds = re.subn(r"bind (\*|127\.0\.0\.1):8080\b", f"bind 127.0.0.1:{bind}", text)
    text, stat_binds = re.subn(r"bind 127\.0\.0\.1:8404\b", f"bind 127.0.0.1:{stats}", text)
    assert (servers, binds, stat_binds) == (9, 1, 1), "files/haproxy-local.cfg changed shape"
    return text


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with running() as c:
        yield c


@pytest.fixture(scope="module")
def haproxy_metrics_url(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.skip("haproxy not installed (make test-monitoring installs it)")
    base: Path = tmp_path_factory.mktemp("haproxy")
    port, stats = free_ports(2)
    ports = {n.ports.node_id: (n.ports.client, n.ports.health) for n in cluster.nodes}
    cfg = base / "haproxy.cfg"
    cfg.write_text(render_config(ports, port, stats))
    subprocess.run([haproxy, "-c", "-q", "-f", str(cfg)], check=True)
    log = (base / "haproxy.log").open("wb")
    proc = subprocess.Popen(
        [haproxy, "-db", "-f", str(cfg)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # The write backend has found the leader (writes may pass through any_backend before).
        url = f"http://127.0.0.1:{stats}/metrics"
        cluster.wait_for(
            "haproxy's write backend up",
            lambda: (
                'haproxy_backend_active_servers{proxy="write_backend"} 1'
                in http("GET", url, timeout=2.0).body.decode()
            ),
            timeout=20.0,
        )
        r = http("POST", f"http://127.0.0.1:{port}/kv", {"key": "m", "value": "1"})
        assert r.status == 200, r
        yield url
    finally:
        proc.kill()
        proc.wait(timeout=10)
        log.close()


def scrape(url: str) -> str:
    r = http("GET", url, timeout=5.0)
    assert r.status == 200, (url, r)
    return r.body.decode()


def node_metrics(cluster: Cluster, node_id: int) -> str:
    return scrape(cluster.node(node_id).health_url + "/metrics")


def value(text: str, series: str) -> float | None:
    """The value of one exact series line (name plus labels as rendered), None if absent."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_every_node_metric_the_rules_and_dashboard_use_is_exported(cluster: Cluster) -> None:
    cluster.put_retrying([1, 2, 3], "k", "v")
    exported: set[str] = set()
    for n in cluster.nodes:
        exported |= exported_names(node_metrics(cluster, n.ports.node_id))
    used = used_metrics()
    missing = {
        name: sorted(where)
        for name, where in used.items()
        if not name.startswith(BALANCER_PREFIXES)
        and name not in SCRAPE_SERIES
        and name not in exported
    }
    assert not missing, f"used by the rules or dashboard but not exported by a node: {missing}"


def test_every_nginx_metric_the_rules_use_is_rendered_by_the_lua_checker() -> None:
    """roles/nginx renders its /metrics in Lua (raftnode_balancer.metrics): each name the
    rules use appears there as a metric name (a live nginx runs in molecule/quorum)."""
    source = NGINX_LUA.read_text()
    missing = {
        name: sorted(where)
        for name, where in used_metrics().items()
        if name.startswith("raftnode_balancer_")
        and not re.search(rf"[\"(]{re.escape(name)}[ {{\"]", source)
    }
    assert not missing, f"used by the rules but not rendered by {NGINX_LUA.name}: {missing}"


def test_every_haproxy_metric_the_rules_and_dashboard_use_is_exported(
    haproxy_metrics_url: str,
) -> None:
    exported = exported_names(scrape(haproxy_metrics_url))
    missing = {
        name: sorted(where)
        for name, where in used_metrics().items()
        if name.startswith("haproxy_") and name not in exported
    }
    assert not missing, f"used by the rules or dashboard but not exported by HAProxy: {missing}"
    # The labels the rules select on are there too.
    text = scrape(haproxy_metrics_url)
    assert re.search(r'haproxy_server_status\{proxy="read_backend",server="n\d",state="UP"\}', text)


def test_added_series_have_live_values(cluster: Cluster) -> None:
    leader = cluster.leader()
    for n in cluster.nodes:
        text = node_metrics(cluster, n.ports.node_id)
        assert value(text, f'raftnode_build_info{{version="{raftnode.__version__}"}}') == 1.0
        assert value(text, "raftnode_has_leader") == 1.0
        rss = value(text, "process_resident_memory_bytes")
        assert rss is not None and rss > 0
    peers = [n.ports.node_id for n in cluster.nodes if n.ports.node_id != leader]

    def round_trips_seen() -> bool:
        text = node_metrics(cluster, leader)
        counts = [
            value(text, f'raftnode_peer_round_trip_seconds_count{{peer="{p}"}}') for p in peers
        ]
        return all(c is not None and c > 0 for c in counts)

    cluster.wait_for("heartbeat round trips on the leader", round_trips_seen, timeout=10.0)


def test_a_former_leader_drops_its_lag_series(cluster: Cluster) -> None:
    leader = cluster.leader()
    text = node_metrics(cluster, leader)
    assert "raftnode_replication_lag_entries{" in text
    r = cluster.admin(leader, "POST", "/leader/transfer")
    assert r.status == 200, r
    cluster.wait_for(
        "a new leader",
        lambda: (lambda new: new if new != leader else None)(cluster.leader(timeout=10.0)),
        timeout=15.0,
    )
    text = node_metrics(cluster, leader)
    assert "raftnode_replication_lag_entries{" not in text
    assert value(text, "raftnode_is_leader") == 0.0
