"""roles/nginx's nginx.conf, rendered by Ansible, run on loopback in front of a test or
benchmark cluster (tests/nginx, bench.peers_bench).

The nginx binary, its Lua module and lua-resty-core come from Debian's packages unpacked into
``.venv/nginx`` (``make test-nginx`` and ``make bench-peers`` do it with ``apt-get download``
and ``dpkg-deb -x``: no service is installed or started). The rendered file is the role's, with
only what a test process needs changed: the module, library and temp paths into that directory,
the pid and log files into the test's own directory, no ``user`` switch, and each node's own
loopback ports.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.peers import role_template
from bench.peers.raftnode import RaftnodeCluster
from bench.procs import ProcessGroup, request_json, wait_until
from raftnode.devcluster import free_ports

REPO = Path(__file__).resolve().parents[2]
ROOT = REPO / ".venv" / "nginx"
NGINX = ROOT / "usr" / "sbin" / "nginx"
ROLE = REPO / "roles" / "nginx"
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def available() -> bool:
    return NGINX.exists() and role_template.available()


def render(directory: Path, variables: dict[str, object]) -> Path:
    """The role's template rendered by Ansible with ``variables`` over its defaults."""
    return role_template.render("nginx", "nginx.conf.j2", directory, variables)


def localise(text: str, directory: Path) -> str:
    """The changes a test process needs (module dir, temp/pid/log paths, no user switch)."""
    modules = ROOT / "usr" / "lib" / "nginx" / "modules"
    replacements = {
        "include /etc/nginx/modules-enabled/*.conf;": (
            f"load_module {modules}/ndk_http_module.so;\n"
            f"load_module {modules}/ngx_http_lua_module.so;"
        ),
        "user www-data;": "",
        "/run/nginx.pid": str(directory / "nginx.pid"),
        "/var/log/nginx/error.log": f"{directory}/error.log",
        'lua_package_path "': f'lua_package_path "{ROOT}/usr/share/lua/5.1/?.lua;',
    }
    for old, new in replacements.items():
        assert old in text, f"the role's nginx.conf no longer has {old!r}"
        text = text.replace(old, new)
    temp = "".join(f"    {k}_temp_path {directory}/{k};\n" for k in TEMP_PATHS)
    return text.replace("http {\n", "http {\n" + temp, 1)


@dataclass
class LocalNginx:
    directory: Path
    config: Path
    port: int
    status_port: int

    @property
    def env(self) -> dict[str, str]:
        libs = [ROOT / "usr" / "lib" / "x86_64-linux-gnu", ROOT / "lib" / "x86_64-linux-gnu"]
        return dict(os.environ, LD_LIBRARY_PATH=":".join(str(p) for p in libs))

    def command(self, *args: str) -> list[str]:
        return [str(NGINX), "-p", str(self.directory), "-c", str(self.config), *args]

    def check(self) -> subprocess.CompletedProcess[str]:
        """``nginx -t`` on the file, as the role's template task validates it."""
        return subprocess.run(
            self.command("-t", "-q"), env=self.env, capture_output=True, text=True, timeout=30
        )

    def start(self) -> None:
        subprocess.run(self.command(), env=self.env, check=True, timeout=30)

    def master_pid(self) -> int:
        return int((self.directory / "nginx.pid").read_text())

    def reload(self) -> None:
        os.kill(self.master_pid(), signal.SIGHUP)

    def stop(self) -> None:
        pid_file = self.directory / "nginx.pid"
        if not pid_file.exists():
            return
        pid = self.master_pid()
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pid_file.exists():
            time.sleep(0.05)
        if pid_file.exists():
            os.killpg(os.getpgid(pid), signal.SIGKILL)

    def error_log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text()[-4000:] if path.exists() else ""


def prepare(
    directory: Path,
    servers: list[dict[str, object]],
    port: int,
    status_port: int,
    **variables: object,
) -> LocalNginx:
    """Render and localise the role's configuration for ``servers`` (with their own ports)."""
    rendered = render(
        directory,
        {
            "nginx_backend_servers": servers,
            "nginx_listen_address": "127.0.0.1",
            "nginx_listen_port": port,
            "nginx_status_listen_address": "127.0.0.1",
            "nginx_status_port": status_port,
            "nginx_lua_dir": str(ROLE / "files"),
            "nginx_worker_processes": 2,
            "nginx_access_log": str(directory / "access.log"),
            **variables,
        },
    )
    config = directory / "nginx.conf"
    config.write_text(localise(rendered.read_text(), directory))
    return LocalNginx(directory, config, port, status_port)


class BenchNginx:
    """The role's nginx in front of a benchmark's raftnode cluster, in the foreground as a
    child of the caller's ``ProcessGroup``."""

    def __init__(self, base: Path, procs: ProcessGroup, cluster: RaftnodeCluster) -> None:
        self.base = base.resolve()
        self.procs = procs
        self.cluster = cluster
        self.port, self.status_port = free_ports(2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        if not available():
            raise RuntimeError(
                f"Debian's nginx is not unpacked in {ROOT} (make bench-peers does it)"
            )
        self.base.mkdir(parents=True, exist_ok=True)
        servers: list[dict[str, object]] = [
            {
                "name": f"n{n.ports.node_id}",
                "address": "127.0.0.1",
                "port": n.ports.client,
                "health_port": n.ports.health,
            }
            for n in self.cluster.nodes
        ]
        # No access log: HAProxy's local config logs nothing either.
        proc = prepare(self.base, servers, self.port, self.status_port, nginx_access_log="")
        checked = proc.check()
        if checked.returncode != 0:
            raise RuntimeError(f"nginx -t failed: {checked.stderr}")
        self.procs.spawn(proc.command("-g", "daemon off;"), self.base / "nginx.out", env=proc.env)
        wait_until(
            "nginx passes writes",
            lambda: (
                request_json(self.url + "/kv", {"key": "bench-lb", "value": "x"}, "POST")[0] == 200
            ),
            timeout,
        )
