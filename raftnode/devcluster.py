"""A local development cluster: N raftnode processes on loopback, for ``make start-cluster``,
the integration tests and the failover benchmark.

``python -m raftnode.devcluster start --dir data`` writes one config per node under the
directory (node N: client 808N, health 1000N, peer 908N by default), starts each node as a
daemon (its own session, pid file and log file under the directory), and waits — bounded —
until exactly one node answers 200 on ``/primary``. ``stop`` sends SIGTERM to every pid file's
process, then SIGKILL after a bounded wait.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from raftnode.defaults import Limits, LogSettings, Snapshot, Timing


@dataclass(frozen=True, slots=True)
class NodePorts:
    node_id: int
    client: int
    health: int
    peer: int


@dataclass(frozen=True, slots=True)
class LocalNode:
    ports: NodePorts
    config: Path
    pid_file: Path
    log_file: Path
    scheme: str = "http"
    """``https`` when the config has ``tls:`` (the client and health listeners speak TLS)."""

    @property
    def health_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.ports.health}"

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.ports.client}"


LOCAL_AUTH = {"anonymous_role": "admin"}
"""The local quick start on loopback is anonymous, as the seed's curl commands are: chosen
here explicitly (a config that says nothing about auth is refused)."""


def default_ports(n: int = 3) -> list[NodePorts]:
    """The default ports of a local cluster: client 808N, health 1000N, peer 908N."""
    return [NodePorts(i, 8080 + i, 10000 + i, 9080 + i) for i in range(1, n + 1)]


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(n: int) -> list[int]:
    """``n`` bindable loopback ports below the kernel's ephemeral range.

    Ports the OS hands out for ``bind(0)`` come from the ephemeral range, where any outgoing
    connection may take them again between a node's kill and its restart; ports below it are
    only ever taken by listeners. The start is randomized so parallel sessions rarely overlap.
    """
    lo = 20000
    hi = min(_ephemeral_range()[0], 32768)
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randrange(lo, hi)
        if port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


def write_configs(
    base: Path,
    ports: list[NodePorts],
    *,
    timing: dict[str, int] | None = None,
    limits: dict[str, int] | None = None,
    snapshot_every: int = Snapshot().every_entries,
    log_level: str = LogSettings().level,
    auth: dict[str, Any] | None = None,
    tls: dict[str, Any] | None = None,
    peer_tls: dict[str, str] | None = None,
    cpu_scheduling: str | None = None,
) -> list[LocalNode]:
    """One YAML config per node under ``base`` (and a shared secret file), idempotently.

    Timing is written out in full (``raftnode.defaults`` overridden by ``timing``) so a config
    file read on its own shows what the node runs with. ``auth`` defaults to the quick start's
    explicit choice, anonymous admin (``LOCAL_AUTH``); ``tls`` (none by default) and
    ``peer_tls`` are written as given, ``{node_id}`` in their values replaced by each node's id.
    ``cpu_scheduling`` is written when given (else the node's default, ``batch``).
    """
    base = base.resolve()
    base.mkdir(parents=True, exist_ok=True)
    secret = base / "secret"
    if not secret.exists():
        secret.write_text(secrets.token_hex(32) + "\n")
        secret.chmod(0o600)
    cluster = [
        {
            "id": p.node_id,
            "name": f"n{p.node_id}",
            "peer": f"127.0.0.1:{p.peer}",
            "client": f"127.0.0.1:{p.client}",
        }
        for p in ports
    ]
    nodes = []
    for p in ports:
        cfg = {
            "node_id": p.node_id,
            "data_dir": str(base / f"n{p.node_id}"),
            "listen": {
                "client": f"127.0.0.1:{p.client}",
                "health": f"127.0.0.1:{p.health}",
                "peer": f"127.0.0.1:{p.peer}",
            },
            "cluster": cluster,
            "secret_file": str(secret),
            "timing": {**asdict(Timing()), **(timing or {})},
            "limits": {**asdict(Limits()), **(limits or {})},
            "snapshot": {"every_entries": snapshot_every},
            "log": {"level": str(log_level), "format": str(LogSettings().format)},
            "auth": dict(LOCAL_AUTH if auth is None else auth),
        }
        if tls is not None:
            cfg["tls"] = {
                k: v.format(node_id=p.node_id) if isinstance(v, str) else v for k, v in tls.items()
            }
        if peer_tls is not None:
            cfg["peer_tls"] = {k: v.format(node_id=p.node_id) for k, v in peer_tls.items()}
        if cpu_scheduling is not None:
            cfg["cpu_scheduling"] = cpu_scheduling
        path = base / f"n{p.node_id}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        scheme = "http" if tls is None else "https"
        nodes.append(
            LocalNode(p, path, base / f"n{p.node_id}.pid", base / f"n{p.node_id}.log", scheme)
        )
    return nodes


def start_node(
    node: LocalNode, python: str = sys.executable, source_dir: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start one node as a daemon (own session), appending to its log; writes its pid file.

    ``source_dir`` runs the ``raftnode`` package found there instead of the installed one (an
    older release's source, for upgrade tests).
    """
    env = None
    if source_dir is not None:
        env = {**os.environ, "PYTHONPATH": str(source_dir)}
    with open(node.log_file, "ab") as log:
        proc = subprocess.Popen(
            [python, "-m", "raftnode.cli", "serve", "--config", str(node.config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd=source_dir,
            env=env,
        )
    node.pid_file.write_text(f"{proc.pid}\n")
    return proc


def http_status(url: str, timeout: float = 0.5) -> int:
    """The status code of a GET (0 when nothing answered)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (urllib.error.URLError, OSError):
        return 0


def leaders(nodes: list[LocalNode]) -> list[LocalNode]:
    return [n for n in nodes if http_status(n.health_url + "/primary") == 200]


def wait_for_leader(nodes: list[LocalNode], timeout: float) -> LocalNode | None:
    """Poll ``/primary`` until exactly one node answers 200; None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = leaders(nodes)
        if len(found) == 1:
            return found[0]
        time.sleep(0.05)
    return None


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def stop_pid(pid: int, timeout: float) -> None:
    """SIGTERM, wait (bounded), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def stop_all(base: Path, timeout: float = 10.0) -> int:
    """Stop every node with a pid file under ``base``; returns how many were running."""
    stopped = 0
    for pid_file in sorted(base.glob("n*.pid")):
        pid = read_pid(pid_file)
        if pid is not None and pid_alive(pid):
            stop_pid(pid, timeout)
            stopped += 1
        pid_file.unlink(missing_ok=True)
    return stopped


@dataclass(slots=True)
class StartedNode:
    """A node this ``start`` launched: its process and where its log was when it began."""

    node: LocalNode
    proc: subprocess.Popen[bytes]
    log_offset: int


def failure_line(log_file: Path, offset: int) -> str:
    """The line of the node's own log that says why it stopped: its last error line, else its
    last line (a traceback's last line is the exception)."""
    try:
        with open(log_file, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"(cannot read {log_file}: {e.strerror})"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "level=error" in line or '"error"' in line.lower()]
    return (errors or lines or ["(nothing in its log)"])[-1]


def exited(started: list[StartedNode]) -> list[StartedNode]:
    return [s for s in started if s.proc.poll() is not None]


def wait_until_up(
    nodes: list[LocalNode], started: list[StartedNode], timeout: float
) -> tuple[LocalNode | None, list[StartedNode]]:
    """Poll until one node leads and every node this run started is alive and answers on its
    health port; stop early when one of them exits. Returns (leader or None, exited nodes)."""
    deadline = time.monotonic() + timeout
    while True:
        dead = exited(started)
        if dead:
            return None, dead
        found = leaders(nodes)
        serving = all(http_status(s.node.health_url + "/health") != 0 for s in started)
        if len(found) == 1 and serving:
            # A node can lose its port a moment after binding another: look once more.
            time.sleep(0.2)
            dead = exited(started)
            return (None, dead) if dead else (found[0], [])
        if time.monotonic() >= deadline:
            return None, []
        time.sleep(0.05)


def _cmd_start(args: argparse.Namespace) -> int:
    base = Path(args.dir)
    return start_cluster(write_configs(base, default_ports(args.nodes)), args.timeout, base)


def start_cluster(nodes: list[LocalNode], timeout: float, base: Path) -> int:
    """Start the nodes not yet running and report: 0 once one leads and every node started
    here serves; 1 naming each node that exited (with its own log line) or when no leader
    came within timeout."""
    started: list[StartedNode] = []
    for n in nodes:
        pid = read_pid(n.pid_file)
        if pid is not None and pid_alive(pid):
            print(f"node {n.ports.node_id} already running (pid {pid})")
            continue
        offset = n.log_file.stat().st_size if n.log_file.exists() else 0
        started.append(StartedNode(n, start_node(n), offset))
        print(
            f"starting node {n.ports.node_id}: client :{n.ports.client} "
            f"health :{n.ports.health} peer :{n.ports.peer} log {n.log_file}"
        )
    leader, dead = wait_until_up(nodes, started, timeout)
    for s in dead:
        s.node.pid_file.unlink(missing_ok=True)
        print(
            f"node {s.node.ports.node_id} failed to start (exit code {s.proc.returncode}): "
            f"{failure_line(s.node.log_file, s.log_offset)}",
            file=sys.stderr,
        )
    if dead:
        running = [s.node.ports.node_id for s in started if s not in dead]
        if running:
            print(
                f"nodes {', '.join(map(str, running))} still run; `make stop-cluster` "
                f"(python -m raftnode.devcluster stop --dir {base}) stops them",
                file=sys.stderr,
            )
        return 1
    if leader is None:
        print(f"no leader within {timeout:.0f}s; see the logs under {base}", file=sys.stderr)
        return 1
    for s in started:
        print(f"started node {s.node.ports.node_id} (pid {s.proc.pid})")
    print(f"leader: node {leader.ports.node_id}")
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    n = stop_all(Path(args.dir))
    print(f"stopped {n} node(s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raftnode.devcluster")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "start", help="start a local cluster on the default ports (808N, 1000N, 908N)"
    )
    p.add_argument("--dir", default="data")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--timeout", type=float, default=20.0)
    p.set_defaults(func=_cmd_start)
    p = sub.add_parser("stop", help="stop the local cluster")
    p.add_argument("--dir", default="data")
    p.set_defaults(func=_cmd_stop)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
