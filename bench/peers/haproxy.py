"""HAProxy in front of a benchmark's raftnode cluster: files/haproxy-local.cfg with its ports
rewritten to the cluster's free ones (and every bind on 127.0.0.1), run in the foreground as a
child of the caller's ``ProcessGroup``, under ``SCHED_BATCH`` as the haproxy role and
``make start-lb`` run it (or the inherited policy).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from bench.deps import command_path
from bench.peers.raftnode import RaftnodeCluster
from bench.procs import ProcessGroup, request_json, wait_until
from raftnode.cpu_scheduling import POLICIES
from raftnode.devcluster import free_ports

REPO = Path(__file__).resolve().parents[2]
LOCAL_CFG = REPO / "files" / "haproxy-local.cfg"


def render_config(template: str, ports: dict[int, tuple[int, int]], bind: int, stats: int) -> str:
    """The local config with node N's 808N/1000N replaced by ``ports[N]`` (client, health)."""

    def server(m: re.Match[str]) -> str:
        nid = int(m.group(2))
        client, health = ports[nid]
        return f"server n{nid} 127.0.0.1:{client} check port {health}"

    text = re.sub(r"server n(\d) 127\.0\.0\.1:808(\d) check port 1000\d", server, template)
    text = re.sub(r"bind (\*|127\.0\.0\.1):8080\b", f"bind 127.0.0.1:{bind}", text)
    text = re.sub(r"bind 127\.0\.0\.1:8404", f"bind 127.0.0.1:{stats}", text)
    # A free port may contain "808" (18083): look for the seed's ports themselves.
    if re.search(r"(:808\d|port 1000\d|:8404)\b", re.sub(r"#.*", "", text)):
        raise ValueError("haproxy template: a seed port was left unrewritten")
    return text


def haproxy_argv(cfg: Path, cpu_scheduling: str = "batch") -> list[str]:
    """HAProxy in the foreground on ``cfg``; with ``batch``, started through ``chrt --batch``
    so every thread has ``SCHED_BATCH`` from the start (the role's ``CPUSchedulingPolicy``)."""
    if cpu_scheduling not in POLICIES:
        raise ValueError(f"cpu_scheduling must be batch or inherit, got {cpu_scheduling!r}")
    argv = [command_path("haproxy"), "-db", "-f", str(cfg)]
    return [command_path("chrt"), "--batch", "0", *argv] if cpu_scheduling == "batch" else argv


class LocalHaproxy:
    def __init__(
        self,
        base: Path,
        procs: ProcessGroup,
        cluster: RaftnodeCluster,
        cpu_scheduling: str = "batch",
    ) -> None:
        self.base = base.resolve()
        self.procs = procs
        self.cluster = cluster
        self.cpu_scheduling = cpu_scheduling
        self.port, self.stats_port = free_ports(2)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        ports = {n.ports.node_id: (n.ports.client, n.ports.health) for n in self.cluster.nodes}
        cfg = self.base / "haproxy.cfg"
        self.base.mkdir(parents=True, exist_ok=True)
        cfg.write_text(render_config(LOCAL_CFG.read_text(), ports, self.port, self.stats_port))
        haproxy = command_path("haproxy")
        subprocess.run([haproxy, "-c", "-q", "-f", str(cfg)], check=True)
        self.proc = self.procs.spawn(
            haproxy_argv(cfg, self.cpu_scheduling), self.base / "haproxy.log"
        )
        # Ready once a write goes through to the leader's backend.
        wait_until(
            "haproxy passes writes",
            lambda: (
                request_json(self.url + "/kv", {"key": "bench-lb", "value": "x"}, "POST")[0] == 200
            ),
            timeout,
        )
