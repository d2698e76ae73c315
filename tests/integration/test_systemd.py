"""The systemd notify protocol end to end: a real node process talking to a notify socket
(and running, like every thread it started, under the default CPU scheduling policy)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from raftnode.cpu_scheduling import current_policy
from raftnode.devcluster import NodePorts, free_ports, write_configs


def test_ready_status_watchdog_and_stopping() -> None:
    base = Path(tempfile.mkdtemp(prefix="raftnode-sd-"))
    sock_path = str(base / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(10)
    (node,) = write_configs(base, [NodePorts(1, *free_ports(3))])  # a one-node cluster
    env = {**os.environ, "NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "400000"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "raftnode.cli", "serve", "--config", str(node.config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        messages: list[str] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any("READY=1" in m for m in messages):
            messages.append(sock.recv(4096).decode())
        ready = next(m for m in messages if "READY=1" in m)
        assert "STATUS=role=" in ready and f"MAINPID={proc.pid}" in ready
        # cpu_scheduling defaults to batch: set before the first thread, so every one has it.
        policies = {
            current_policy(task / "stat") for task in Path(f"/proc/{proc.pid}/task").iterdir()
        }
        assert policies == {os.SCHED_BATCH}
        deadline = time.monotonic() + 10
        seen: set[str] = set()
        while time.monotonic() < deadline and not {"WATCHDOG=1", "leader"} <= seen:
            m = sock.recv(4096).decode()
            if m == "WATCHDOG=1":
                seen.add(m)
            if m.startswith("STATUS=role=leader"):
                seen.add("leader")
        assert seen == {"WATCHDOG=1", "leader"}
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if sock.recv(4096) == b"STOPPING=1":
                break
        else:
            raise AssertionError("no STOPPING=1")
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        sock.close()
        shutil.rmtree(base, ignore_errors=True)
