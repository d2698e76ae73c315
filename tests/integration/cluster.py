"""A real three-process cluster on loopback for the integration tests (and nothing else).

Ports are picked free (never the default ones, client API 8081-8083 and so on, which a
developer's `make start-cluster` may hold), every process runs in its own session, and
``close`` kills every process (SIGCONT, then SIGKILL) and removes the data directory, so a
failing test leaves nothing behind. Every wait takes a timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from raftnode.devcluster import LocalNode, NodePorts, free_ports, start_node, write_configs


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<{self.status} {self.body[:200]!r}>"


def http(
    method: str,
    url: str,
    body: Any = None,
    timeout: float = 10.0,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> Response:
    """One HTTP request; status 0 means nothing answered (connection refused, timeout, a
    failed TLS handshake)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return Response(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, dict(e.headers), e.read())
    except (urllib.error.URLError, OSError):
        return Response(0, {}, b"")


class Cluster:
    def __init__(
        self,
        n: int = 3,
        *,
        snapshot_every: int = 10000,
        request_timeout_ms: int = 5000,
        limits: dict[str, int] | None = None,
        auth: dict[str, Any] | None = None,
        tls: dict[str, Any] | None = None,
        peer_tls: dict[str, str] | None = None,
        base: Path | None = None,
    ) -> None:
        """``auth`` and ``tls`` go into every node's config as given (relative paths are
        relative to ``base``, the cluster's directory); with ``tls`` the harness speaks HTTPS
        and trusts ``tls["ca_file"]``; ``peer_tls`` paths may hold ``{node_id}``."""
        self.base = base or Path(tempfile.mkdtemp(prefix="raftnode-it-"))
        self.context: ssl.SSLContext | None = None
        if tls is not None:
            self.context = ssl.create_default_context(cafile=str(self.base / tls["ca_file"]))
        ports = free_ports(3 * n)
        self.nodes: list[LocalNode] = write_configs(
            self.base,
            [NodePorts(i + 1, ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]) for i in range(n)],
            timing={"request_timeout_ms": request_timeout_ms},
            limits=limits,
            snapshot_every=snapshot_every,
            auth=auth,
            tls=tls,
            peer_tls=peer_tls,
        )
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    # -- processes -------------------------------------------------------------------------

    def node(self, node_id: int) -> LocalNode:
        return self.nodes[node_id - 1]

    def add_joiner(self) -> LocalNode:
        """The config of one more node that joins this cluster later: it lists every member and
        itself, and says ``initial_cluster_state: existing`` (it never bootstraps)."""
        new_id = len(self.nodes) + 1
        client, health, peer = free_ports(3)
        cfg = yaml.safe_load(self.nodes[0].config.read_text())
        me = {"id": new_id, "name": f"n{new_id}", "peer": f"127.0.0.1:{peer}"}
        me["client"] = f"127.0.0.1:{client}"
        cfg.update(
            node_id=new_id,
            data_dir=str(self.base / f"n{new_id}"),
            listen={
                "client": f"127.0.0.1:{client}",
                "health": f"127.0.0.1:{health}",
                "peer": f"127.0.0.1:{peer}",
            },
            cluster=[*cfg["cluster"], me],
            initial_cluster_state="existing",
        )
        path = self.base / f"n{new_id}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        node = LocalNode(
            NodePorts(new_id, client, health, peer),
            path,
            self.base / f"n{new_id}.pid",
            self.base / f"n{new_id}.log",
        )
        self.nodes.append(node)
        return node

    def admin(
        self,
        node_id: int,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        url = self.url(node_id, "/admin/v1" + path)
        return http(method, url, body, timeout=20.0, headers=headers, context=self.context)

    def start(self, node_id: int | None = None, source_dir: Path | None = None) -> None:
        for n in self.nodes if node_id is None else [self.node(node_id)]:
            self.procs[n.ports.node_id] = start_node(n, source_dir=source_dir)

    def signal(self, node_id: int, sig: signal.Signals) -> None:
        self.procs[node_id].send_signal(sig)

    def kill(self, node_id: int) -> None:
        p = self.procs.pop(node_id)
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGCONT)
            p.kill()
        p.wait(timeout=10)

    def wait_exit(self, node_id: int, timeout: float) -> int:
        rc = self.procs[node_id].wait(timeout=timeout)
        del self.procs[node_id]
        return rc

    def close(self) -> None:
        for node_id in list(self.procs):
            with contextlib.suppress(Exception):
                self.kill(node_id)
        if os.environ.get("RAFTNODE_KEEP_TEST_DATA"):
            return
        shutil.rmtree(self.base, ignore_errors=True)

    def log(self, node_id: int) -> str:
        return self.node(node_id).log_file.read_text(errors="replace")

    # -- HTTP ------------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self.context is not None else "http"

    def url(self, node_id: int, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.node(node_id).ports.client}{path}"

    def health_url(self, node_id: int, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.node(node_id).ports.health}{path}"

    def health(
        self, node_id: int, path: str, method: str = "GET", headers: dict[str, str] | None = None
    ) -> Response:
        url = self.health_url(node_id, path)
        return http(method, url, timeout=2.0, headers=headers, context=self.context)

    def request(
        self,
        node_id: int,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """One client API request to ``node_id`` (HTTPS when the cluster speaks it)."""
        return http(method, self.url(node_id, path), body, headers=headers, context=self.context)

    def status(self, node_id: int) -> dict[str, Any]:
        r = self.health(node_id, "/status")
        assert r.status == 200, r
        return r.json()

    def put(
        self,
        node_id: int,
        key: str,
        value: str,
        timeout: float = 10.0,
        idempotency_key: str | None = None,
    ) -> Response:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        body = {"key": key, "value": value}
        url = self.url(node_id, "/kv")
        return http("POST", url, body, timeout, headers=headers, context=self.context)

    def get(self, node_id: int, key: str, consistency: str | None = None) -> Response:
        q = f"?consistency={consistency}" if consistency else ""
        return http("GET", self.url(node_id, f"/kv/{key}{q}"), context=self.context)

    # -- waiting ---------------------------------------------------------------------------

    def leader(self, timeout: float = 15.0, among: list[int] | None = None) -> int:
        """The id of the single node answering /primary 200 (among ``among``)."""
        ids = among or [n for n in self.procs]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [i for i in ids if self.health(i, "/primary").status == 200]
            if len(found) == 1:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no single leader among {ids} within {timeout}s")

    def wait_for(
        self, what: str, predicate: Any, timeout: float = 15.0, interval: float = 0.05
    ) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def put_retrying(
        self, node_ids: list[int], key: str, value: str, timeout: float = 15.0
    ) -> Response:
        """Write through any of ``node_ids`` until one acknowledges (bounded)."""
        deadline = time.monotonic() + timeout
        i = 0
        while True:
            r = self.put(node_ids[i % len(node_ids)], key, value, timeout=5.0)
            if r.status == 200:
                return r
            if time.monotonic() > deadline:
                raise AssertionError(f"write {key} not acknowledged within {timeout}s: {r}")
            i += 1
            time.sleep(0.05)


@contextlib.contextmanager
def running(**options: Any) -> Iterator[Cluster]:
    """A started ``Cluster(**options)`` with a leader; closed (every process killed, data
    removed) on the way out, on failure too."""
    c = Cluster(**options)
    try:
        c.start()
        c.leader()
        yield c
    finally:
        c.close()
