"""A three-member etcd (Debian's etcd-server) on free loopback ports, driven over its JSON gRPC
gateway (``/v3/kv/put``, ``/v3/kv/range``, ``/v3/maintenance/status``, ``/v3/cluster/member/*``).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.deps import command_path
from bench.peers.tls import BenchTls
from bench.procs import ProcessGroup, http_status, request_json, rss_bytes, wait_until
from raftnode.devcluster import free_ports


@dataclass(slots=True)
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    scheme: str = "http"

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.peer_port}"


class EtcdCluster:
    name = "etcd"
    dialect = "etcd"

    def __init__(
        self, base: Path, procs: ProcessGroup, size: int = 3, tls: BenchTls | None = None
    ) -> None:
        """``tls``: HTTPS for clients (server certificate, as raftnode's client port) and
        mutual TLS between members (``--peer-client-cert-auth``), certificates ``etcd-e<N>``."""
        self.base = base.resolve()
        self.procs = procs
        self.tls = tls
        if tls is not None:
            self.name = "etcd TLS"
        ports = free_ports(2 * size)
        self.nodes = [
            EtcdMember(
                f"e{i + 1}",
                ports[2 * i],
                ports[2 * i + 1],
                self.base / f"e{i + 1}.etcd",
                self.base / f"e{i + 1}.log",
                scheme="http" if tls is None else "https",
            )
            for i in range(size)
        ]

    def _initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.nodes)

    def _start(self, m: EtcdMember, state: str = "new") -> None:
        m.data_dir.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            command_path("etcd"),
            "--name",
            m.name,
            "--data-dir",
            str(m.data_dir),
            "--listen-client-urls",
            m.client_url,
            "--advertise-client-urls",
            m.client_url,
            "--listen-peer-urls",
            m.peer_url,
            "--initial-advertise-peer-urls",
            m.peer_url,
            "--initial-cluster",
            self._initial_cluster(),
            "--initial-cluster-state",
            state,
            "--initial-cluster-token",
            "raftnode-bench",
            "--log-level",
            "warn",
            "--logger",
            "zap",
        ]
        if self.tls is not None:
            cert, key, ca = (
                self.tls.cert(f"etcd-{m.name}"),
                self.tls.key(f"etcd-{m.name}"),
                self.tls.ca_file,
            )
            argv += [
                f"--cert-file={cert}",
                f"--key-file={key}",
                # No --trusted-ca-file: in etcd 3.4 it makes clients present certificates too;
                # raftnode's client port only presents its own (client_certificates: none).
                f"--peer-cert-file={cert}",
                f"--peer-key-file={key}",
                f"--peer-trusted-ca-file={ca}",
                "--peer-client-cert-auth",
            ]
        m.proc = self.procs.spawn(argv, m.log)

    def start(self, timeout: float = 30.0) -> None:
        for m in self.nodes:
            self._start(m)
        wait_until("etcd healthy", self.all_ready, timeout)
        self.wait_leader(timeout)

    def is_ready(self, m: EtcdMember) -> bool:
        return http_status(m.client_url + "/health") == 200

    def all_ready(self) -> bool:
        return all(self.is_ready(m) for m in self.nodes)

    def status(self, m: EtcdMember) -> dict[str, object]:
        code, body = request_json(m.client_url + "/v3/maintenance/status", {})
        return body if code == 200 and isinstance(body, dict) else {}

    def leader(self) -> EtcdMember | None:
        for m in self.nodes:
            st = self.status(m)
            header = st.get("header")
            if isinstance(header, dict) and st.get("leader") == header.get("member_id"):
                return m
        return None

    def wait_leader(self, timeout: float = 30.0) -> EtcdMember:
        found: list[EtcdMember] = []

        def check() -> bool:
            m = self.leader()
            found[:] = [m] if m else []
            return m is not None

        wait_until("etcd leader", check, timeout)
        return found[0]

    def follower(self) -> EtcdMember:
        leader = self.wait_leader()
        return next(m for m in self.nodes if m is not leader)

    def term_and_leader(self) -> tuple[int, int]:
        best = (0, 0)
        for m in self.nodes:
            st = self.status(m)
            term, leader = int(st.get("raftTerm", 0) or 0), int(st.get("leader", 0) or 0)  # type: ignore[call-overload]
            if (term, leader) > best:
                best = (term, leader)
        return best

    def revision(self, m: EtcdMember) -> int:
        header = self.status(m).get("header")
        return int(header.get("revision", 0)) if isinstance(header, dict) else 0

    def member_id(self, m: EtcdMember) -> str:
        header = self.status(m).get("header")
        if not isinstance(header, dict) or "member_id" not in header:
            raise RuntimeError(f"etcd {m.name}: no member id in /v3/maintenance/status")
        return str(header["member_id"])

    def data_dir(self, m: EtcdMember) -> Path:
        return m.data_dir

    def stop_node(self, m: EtcdMember) -> None:
        if m.proc is not None:
            self.procs.stop(m.proc)
            m.proc = None

    def restart_node(self, m: EtcdMember, wipe: bool = False) -> None:
        """Restart a member; ``wipe`` replaces it by an empty one (member remove, add, start
        with ``--initial-cluster-state existing``: etcd's documented way to replace a member
        that lost its data)."""
        if not wipe:
            self.stop_node(m)
            self._start(m)
            return
        via = next(o for o in self.nodes if o is not m)
        member_id = self.member_id(m)
        self.stop_node(m)
        # etcd refuses a reconfiguration (503) until the leader has seen a quorum active for a
        # few seconds, e.g. right after a restart: retry, bounded.
        codes: list[int] = []

        def removed() -> bool:
            url = via.client_url + "/v3/cluster/member/remove"
            codes.append(request_json(url, {"ID": member_id}, timeout=5.0)[0])
            return codes[-1] == 200

        try:
            wait_until(f"etcd member remove {m.name}", removed, 60.0)
        except TimeoutError as e:
            raise RuntimeError(f"{e} (last HTTP {codes[-1] if codes else 0})") from e
        add = {"peerURLs": [m.peer_url]}
        code, _ = request_json(via.client_url + "/v3/cluster/member/add", add)
        if code != 200:
            raise RuntimeError(f"etcd member add {m.name}: HTTP {code}")
        shutil.rmtree(m.data_dir, ignore_errors=True)
        self._start(m, state="existing")

    def progress_index(self, m: EtcdMember) -> int:
        """What a caught-up member must have applied: ``m``'s (the leader's) revision."""
        return self.revision(m)

    def caught_up(self, m: EtcdMember, index: int) -> bool:
        return self.is_ready(m) and self.revision(m) >= index

    def rss(self) -> dict[str, int]:
        return {m.name: rss_bytes(m.proc.pid) if m.proc else 0 for m in self.nodes}

    def leader_url(self) -> str:
        return self.wait_leader().client_url

    def follower_url(self) -> str:
        return self.follower().client_url

    def settle(self) -> None:
        wait_until("etcd all healthy", self.all_ready, 60.0)
