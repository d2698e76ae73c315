"""roles/haproxy's haproxy.cfg, rendered by Ansible, run on loopback in front of a test
cluster. The file is the role's, with only what a test process needs changed: no chroot, user
switch, daemon mode or syslog, the state file and admin socket in the test's directory, and
each node's own loopback ports (the role gives every node the same ports on its own host)."""

from __future__ import annotations

import contextlib
import importlib.util
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from bench.peers import role_template
from raftnode.devcluster import free_ports
from tests.integration.cluster import Cluster, Response, http

PUT_BACK = Path(__file__).resolve().parents[2] / "roles/haproxy/files/haproxy_server_ready.py"
"""The role's put-back script (the server_state entry point runs it on each balancer); its
admin-socket client serves the tests too."""


def _put_back_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("haproxy_server_ready", PUT_BACK)
    assert spec is not None and spec.loader is not None, PUT_BACK
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_PUT_BACK = _put_back_module()

DROPPED_LINES = (
    "log /dev/log local0",
    "log /dev/log local1 notice",
    "chroot /var/lib/haproxy",
    "user haproxy",
    "group haproxy",
    "daemon",
)


def available() -> bool:
    return shutil.which("haproxy") is not None and role_template.available()


def localise(text: str, cluster: Cluster, role_port: int, role_health_port: int) -> str:
    for line in DROPPED_LINES:
        pattern = re.compile(rf"^ +{re.escape(line)}\n", re.MULTILINE)
        assert pattern.search(text), f"the role's haproxy.cfg no longer has {line!r}"
        text = pattern.sub("", text)
    for node in cluster.nodes:
        name, client, health = f"n{node.ports.node_id}", node.ports.client, node.ports.health
        checked = f"server {name} 127.0.0.1:{role_port} check port {role_health_port}"
        forward = f"server {name}-forward 127.0.0.1:{role_port} "
        assert text.count(checked) == 4, f"{name}: the role's server lines changed shape"
        text = text.replace(checked, f"server {name} 127.0.0.1:{client} check port {health}")
        text = text.replace(forward, f"server {name}-forward 127.0.0.1:{client} ")
    return text


@dataclass
class LocalHaproxy:
    directory: Path
    config: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_socket(self) -> Path:
        """The role's admin socket (haproxy_admin_socket), in the test's directory."""
        return self.directory / "admin.sock"

    def admin(self, command: str) -> str:
        """One command line on the admin socket, and HAProxy's answer."""
        answer: str = _PUT_BACK.cli(str(self.admin_socket), command)
        return answer

    def servers_state(self) -> list[dict[str, str]]:
        """The answer to "show servers state", a dict per server."""
        rows: list[dict[str, str]] = _PUT_BACK.servers_state(str(self.admin_socket))
        return rows

    def put_back(
        self, server: str, admin_socket: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the put-back script as the server_state entry point does."""
        socket_path = admin_socket or self.admin_socket
        return subprocess.run(
            [sys.executable, str(PUT_BACK), "--socket", str(socket_path), server],
            capture_output=True,
            text=True,
            timeout=30,
        )

    def check(self) -> subprocess.CompletedProcess[str]:
        """``haproxy -c``, as the role's template task validates the file."""
        return subprocess.run(
            ["haproxy", "-c", "-f", str(self.config)], capture_output=True, text=True, timeout=30
        )

    def start(self) -> None:
        log = (self.directory / "haproxy.log").open("ab")
        self.proc = subprocess.Popen(
            ["haproxy", "-db", "-f", str(self.config)], stdout=log, stderr=subprocess.STDOUT
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


def prepare(directory: Path, cluster: Cluster, port: int, stats_port: int) -> LocalHaproxy:
    """The role's configuration for ``cluster``, on 127.0.0.1:``port``."""
    role_port, role_health_port = 8081, 10001
    variables: dict[str, object] = {
        "haproxy_keyed_unknown_file": str(directory / "haproxy.keyed-outcome-unknown.http"),
    }
    role_template.render("haproxy", "keyed-outcome-unknown.http.j2", directory, variables)
    rendered = role_template.render(
        "haproxy",
        "haproxy.cfg.j2",
        directory,
        {
            **variables,
            "haproxy_backend_servers": [
                {"name": f"n{n.ports.node_id}", "address": "127.0.0.1"} for n in cluster.nodes
            ],
            "haproxy_backend_port": role_port,
            "haproxy_backend_health_port": role_health_port,
            "haproxy_frontend_bind_address": "127.0.0.1",
            "haproxy_frontend_port": port,
            "haproxy_stats_bind_addresses": ["127.0.0.1"],
            "haproxy_stats_port": stats_port,
            "haproxy_stats_anonymous": True,
            "haproxy_admin_socket": str(directory / "admin.sock"),
            "haproxy_server_state_file": str(directory / "server-state"),
        },
    )
    config = directory / "haproxy.cfg"
    config.write_text(localise(rendered.read_text(), cluster, role_port, role_health_port))
    return LocalHaproxy(directory, config, port)


@contextlib.contextmanager
def serving(directory: Path, cluster: Cluster, routed: int = 200) -> Iterator[LocalHaproxy]:
    """The role's HAProxy for ``cluster``, checked with ``haproxy -c`` and started, once a PUT
    through it answers ``routed`` from the leader itself, several times in a row (HAProxy starts
    every server UP: until its first checks a write may land on a follower, which forwards it);
    stopped on the way out, its log printed."""
    port, stats_port = free_ports(2)
    proc = prepare(directory, cluster, port, stats_port)
    checked = proc.check()
    assert checked.returncode == 0, checked.stderr
    proc.start()
    try:
        cluster.wait_for(
            "HAProxy routes writes",
            lambda: all(
                _from_the_leader(http("PUT", proc.url + "/kv/ready", {"value": "v"}), routed)
                for _ in range(len(cluster.nodes) + 2)
            ),
            timeout=20.0,
        )
        yield proc
    finally:
        proc.stop()
        log = directory / "haproxy.log"
        print(log.read_text()[-4000:] if log.exists() else "")


def _from_the_leader(answer: Response, status: int) -> bool:
    return answer.status == status and "x-raftnode-forwarded-to" not in answer.headers
