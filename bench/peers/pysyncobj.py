"""Three PySyncObj KV processes (bench/pysyncobj_kv.py in their own virtualenv) on loopback."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.procs import ProcessGroup, http_status, request_json, wait_until
from raftnode.devcluster import free_ports

APP = Path(__file__).resolve().parent.parent / "pysyncobj_kv.py"


@dataclass(slots=True)
class SyncObjMember:
    name: str
    raft_port: int
    http_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


class PySyncObjCluster:
    name = "pysyncobj"
    dialect = "pysyncobj"

    def __init__(self, base: Path, procs: ProcessGroup, python: Path, size: int = 3) -> None:
        self.base = base.resolve()
        self.procs = procs
        self.python = python
        ports = free_ports(2 * size)
        self.nodes = [
            SyncObjMember(f"p{i + 1}", ports[2 * i], ports[2 * i + 1]) for i in range(size)
        ]

    def start(self, timeout: float = 30.0) -> None:
        for m in self.nodes:
            partners = [o for o in self.nodes if o is not m]
            argv = [str(self.python), str(APP), "--raft", f"127.0.0.1:{m.raft_port}"]
            for o in partners:
                argv += ["--partner", f"127.0.0.1:{o.raft_port}"]
            argv += ["--http", f"127.0.0.1:{m.http_port}"]
            m.proc = self.procs.spawn(argv, self.base / f"{m.name}.log")
        wait_until(
            "pysyncobj http up",
            lambda: all(http_status(m.client_url + "/status") == 200 for m in self.nodes),
            timeout,
        )
        self.wait_leader(timeout)

    def leader(self) -> SyncObjMember | None:
        for m in self.nodes:
            code, body = request_json(m.client_url + "/status")
            if code == 200 and isinstance(body, dict) and body.get("leader"):
                return m
        return None

    def wait_leader(self, timeout: float = 30.0) -> SyncObjMember:
        found: list[SyncObjMember] = []

        def check() -> bool:
            m = self.leader()
            found[:] = [m] if m else []
            return m is not None

        wait_until("pysyncobj leader", check, timeout)
        return found[0]

    def leader_url(self) -> str:
        return self.wait_leader().client_url

    def follower_url(self) -> str:
        leader = self.wait_leader()
        return next(m for m in self.nodes if m is not leader).client_url

    def settle(self) -> None:
        self.wait_leader(60.0)
