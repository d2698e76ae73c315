"""A three-node raftnode cluster on free loopback ports, for the side-by-side benchmarks.

Configs come from ``raftnode.devcluster.write_configs`` (what ``make start-cluster`` runs), on
free ports, never the seed's 808N/1000N/908N; every node is a child of the caller's
``ProcessGroup``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from bench.peers.tls import BenchTls
from bench.procs import ProcessGroup, http_status, request_json, rss_bytes, wait_until
from raftnode.devcluster import LocalNode, NodePorts, free_ports, start_node, write_configs


class RaftnodeCluster:
    name = "raftnode"
    dialect = "raftnode"

    def __init__(
        self,
        base: Path,
        procs: ProcessGroup,
        size: int = 3,
        tls: BenchTls | None = None,
        cpu_scheduling: str | None = None,
    ) -> None:
        """``tls``: HTTPS on the client and health listeners and mutual TLS between peers,
        with the certificates ``bench.peers.tls`` made (``raftnode-<id>``). ``cpu_scheduling``:
        the nodes' policy (``raftnode.cpu_scheduling``; None: the default)."""
        self.base = base
        self.procs = procs
        if tls is not None:
            self.name = "raftnode TLS"
        ports = free_ports(3 * size)
        files = (
            {}
            if tls is None
            else {
                "tls": {
                    "cert_file": str(tls.directory / "raftnode-{node_id}.crt"),
                    "key_file": str(tls.directory / "raftnode-{node_id}.key"),
                    "ca_file": str(tls.ca_file),
                },
            }
        )
        self.nodes: list[LocalNode] = write_configs(
            base,
            [
                NodePorts(i + 1, ports[3 * i], ports[3 * i + 1], ports[3 * i + 2])
                for i in range(size)
            ],
            log_level="warning",
            tls=files.get("tls"),
            peer_tls=files.get("tls"),
            cpu_scheduling=cpu_scheduling,
        )
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            self._start(node)
        wait_until("raftnode leader", lambda: self.leader() is not None, timeout)
        wait_until("raftnode all ready", self.all_ready, timeout)

    def _start(self, node: LocalNode) -> None:
        self._procs[node.ports.node_id] = self.procs.adopt(start_node(node))

    def stop_node(self, node: LocalNode) -> None:
        proc = self._procs.pop(node.ports.node_id, None)
        if proc is not None:
            self.procs.stop(proc)

    def restart_node(self, node: LocalNode, wipe: bool = False) -> None:
        """Restart a node; ``wipe`` replaces it by an empty one the way an operator must (a
        node that lost its disk may not rejoin as itself: it could vote twice): remove the
        member, wipe it, add it back as a learner, start it with ``initial_cluster_state:
        existing``; the leader sends it a snapshot and promotes it once it caught up."""
        self.stop_node(node)
        if not wipe:
            self._start(node)
            return
        nid = node.ports.node_id
        via = next(n for n in self.nodes if n is not node)
        admin = via.client_url + "/admin/v1/members"
        wait_until(
            f"raftnode member remove {nid}",
            lambda: (
                request_json(f"{admin}/{nid}", None, method="DELETE", timeout=10.0)[0] in (200, 404)
            ),
            60.0,
        )
        shutil.rmtree(self.data_dir(node), ignore_errors=True)
        add = {
            "id": nid,
            "peer": f"127.0.0.1:{node.ports.peer}",
            "client": f"127.0.0.1:{node.ports.client}",
        }
        wait_until(
            f"raftnode member add {nid}",
            lambda: request_json(admin, add, timeout=10.0)[0] == 200,
            60.0,
        )
        text = node.config.read_text()
        if "initial_cluster_state" not in text:
            node.config.write_text(text + "initial_cluster_state: existing\n")
        self._start(node)

    def data_dir(self, node: LocalNode) -> Path:
        return self.base.resolve() / f"n{node.ports.node_id}"

    def all_ready(self) -> bool:
        return all(http_status(n.health_url + "/readiness") == 200 for n in self.nodes)

    def is_ready(self, node: LocalNode) -> bool:
        return http_status(node.health_url + "/readiness") == 200

    def leader(self) -> LocalNode | None:
        found = [n for n in self.nodes if http_status(n.health_url + "/primary") == 200]
        return found[0] if len(found) == 1 else None

    def wait_leader(self, timeout: float = 30.0) -> LocalNode:
        found: list[LocalNode] = []

        def check() -> bool:
            node = self.leader()
            found[:] = [node] if node else []
            return node is not None

        wait_until("raftnode leader", check, timeout)
        return found[0]

    def follower(self) -> LocalNode:
        leader = self.wait_leader()
        return next(n for n in self.nodes if n is not leader)

    def status(self, node: LocalNode) -> dict[str, object]:
        code, body = request_json(node.health_url + "/status")
        return body if code == 200 and isinstance(body, dict) else {}

    def term_and_leader(self) -> tuple[int, int]:
        """The highest term any node reports, and the leader id that node names (0: none)."""
        best = (0, 0)
        for node in self.nodes:
            st = self.status(node)
            term, leader = int(st.get("term", 0) or 0), int(st.get("leader", 0) or 0)  # type: ignore[call-overload]
            if (term, leader) > best:
                best = (term, leader)
        return best

    def applied(self, node: LocalNode) -> int:
        return int(self.status(node).get("applied", 0) or 0)  # type: ignore[call-overload]

    def commit_index(self, node: LocalNode) -> int:
        return int(self.status(node).get("commit", 0) or 0)  # type: ignore[call-overload]

    def progress_index(self, node: LocalNode) -> int:
        """What a caught-up node must have applied: ``node``'s (the leader's) commit index."""
        return self.commit_index(node)

    def caught_up(self, node: LocalNode, index: int) -> bool:
        return self.is_ready(node) and self.applied(node) >= index

    def rss(self) -> dict[str, int]:
        return {f"n{nid}": rss_bytes(proc.pid) for nid, proc in sorted(self._procs.items())}

    def pids(self) -> dict[int, int]:
        """Each running node's process id, by node id."""
        return {nid: proc.pid for nid, proc in sorted(self._procs.items())}

    def leader_url(self) -> str:
        return self.wait_leader().client_url

    def follower_url(self) -> str:
        return self.follower().client_url

    def settle(self) -> None:
        """Wait (bounded) until every node is ready again after a load run."""
        time.sleep(0.2)
        wait_until("raftnode all ready", self.all_ready, 60.0)
