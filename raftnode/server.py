"""The raftnode service process: config -> node + KV store + listeners + systemd life cycle.

``serve`` runs until SIGTERM/SIGINT. On SIGTERM a leader first hands leadership to the most
caught-up follower (bounded by ``timing.shutdown_transfer_ms``), so the cluster does not wait an
election timeout for a new leader.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import time
from typing import Any

import uvloop
from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback

from raftnode.config import Address, Limits, NodeConfig
from raftnode.cpu_scheduling import apply_policy
from raftnode.failpoints import KNOWN, UnknownFailpoint, from_environment
from raftnode.http.auth import ClientAuth
from raftnode.http.client_api import ClientApi, ClientApiSettings
from raftnode.http.connection_gate import Refusal
from raftnode.http.health import make_health_app
from raftnode.http.health_server import make_health_server
from raftnode.kv.history import HistoryLimits
from raftnode.kv.lessor import Lessor
from raftnode.kv.service import KeyValueService
from raftnode.kv.store import KeyValueStore, StoreError
from raftnode.metrics import NodeMetrics
from raftnode.node import RaftNode
from raftnode.node_options import options_from_config
from raftnode.raft.types import ConfChange
from raftnode.snapshot_file import STORE_FILE
from raftnode.storage.disk_space import DiskSpaceGuard
from raftnode.storage.errors import StorageError
from raftnode.systemd_notify import SystemdNotifier
from raftnode.tls import ServerTls
from raftnode.tokens import Role

log = logging.getLogger(__name__)

STATUS_INTERVAL = 5.0
DESCRIPTORS_BESIDES_CLIENTS = 256
"""Descriptors a node needs besides client and health connections: peers, WAL segments, the
store, snapshots in flight, logs."""


class RaftnodeServer:
    def __init__(
        self,
        config: NodeConfig,
        notifier: SystemdNotifier | None = None,
        failpoints: frozenset[str] = frozenset(),
    ) -> None:
        self.config = config
        self.metrics = NodeMetrics()
        quota = config.limits.max_store_bytes or None
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = KeyValueStore.open(
            config.data_dir / STORE_FILE,
            max_store_bytes=quota,
            max_snapshot_bytes=config.limits.max_snapshot_bytes,
            history=HistoryLimits(config.history.max_revisions, config.history.max_bytes),
        )
        self.metrics.watch_store(lambda: self.store.quota_used_bytes, quota)
        self.notifier = notifier or SystemdNotifier()
        self.node = RaftNode(
            options_from_config(config, failpoints),
            self.store,
            metrics=self.metrics,
            on_fatal=self._fatal,
        )
        self.service = KeyValueService(
            self.node,
            self.store,
            leader_wait=max(1.0, 4 * config.timing.election_seconds),
            disk_guard=DiskSpaceGuard(config.data_dir, config.limits.min_free_disk_bytes),
        )
        self.lessor = Lessor(self.service, on_expired=self.metrics.leases_expired.inc)
        self.metrics.watch_leases(lambda: len(self.store.leases or ()))
        self.metrics.watch_history(self._watchers, self._compact_revision)
        self.auth = ClientAuth(config.auth, cluster_secret=config.secret)
        self.tls = ServerTls(config.tls) if config.tls is not None else None
        self.client_api: ClientApi | None = None
        self.client_server: asyncio.Server | None = None
        self.health_server: HTTPServer | None = None
        self._periodic: list[PeriodicCallback] = []
        self._stopped = asyncio.Event()
        self._exit_code = 0
        self._shutting_down = False
        self._tasks: set[asyncio.Future[None]] = set()
        self.started_at = time.time()

    def _watchers(self) -> int:
        return len(self.client_api.watches) if self.client_api is not None else 0

    def _compact_revision(self) -> int:
        history = self.store.history
        return history.compact_revision if history is not None else 0

    async def start(self) -> None:
        cfg = self.config
        raise_descriptor_limit(cfg.limits)
        await self.node.start()
        self.lessor.start()
        settings = ClientApiSettings(
            node_id=cfg.node_id,
            limits=cfg.limits,
            request_timeout=cfg.timing.request_timeout_seconds,
            member_clients={m.id: m.client for m in cfg.cluster},
            watch=cfg.watch,
        )
        self.node.add_conf_listener(lambda change: _learn_client_address(settings, change))
        self.client_api = ClientApi(
            self.service, settings, self.metrics, auth=self.auth, tls=self.tls, lessor=self.lessor
        )
        self.client_server = await self.client_api.serve(cfg.listen_client)
        self.health_server = make_health_server(
            make_health_app(
                self.node, self.metrics, self._extra_status, guard=self.auth.check_status
            ),
            cfg.limits,
            self._count_health_refusal,
            ssl_context=self.tls.front if self.tls is not None else None,
        )
        self.health_server.listen(cfg.listen_health.port, cfg.listen_health.host)
        self.node.add_leader_listener(lambda leader, term: self._send_status())
        if self.notifier.watchdog_seconds:
            self._every(self.notifier.watchdog_seconds / 2, self.notifier.watchdog)
        self._every(STATUS_INTERVAL, self._send_status)
        self.notifier.ready(self._status_line())
        log.info(
            "serving",
            extra={
                "fields": {
                    "client": str(cfg.listen_client),
                    "health": str(cfg.listen_health),
                    "peer": str(cfg.listen_peer),
                    "data_dir": str(cfg.data_dir),
                    "https": self.tls is not None,
                    "peer_tls": self.node.peer_tls is not None,
                    "tokens": len(self.auth.table),
                    "anonymous_role": _role_label(cfg.auth.anonymous_role),
                }
            },
        )
        if cfg.insecure and cfg.secret is None and cfg.peer_tls is None:
            log.warning(
                "peer authentication uses an empty secret (insecure: true); "
                "do not use in production"
            )

    def reload(self) -> None:
        """SIGHUP: re-read the token file and the TLS files (HTTPS and peers); a bad one keeps
        the old."""
        log.info("reload requested", extra={"fields": {"signal": "SIGHUP"}})
        self.auth.reload()
        if self.tls is not None:
            self.tls.reload()
        if self.node.peer_tls is not None:
            self.node.peer_tls.reload()

    def _count_health_refusal(self, reason: Refusal) -> None:
        self.metrics.http_refusals.labels(listener="health", reason=reason.value).inc()

    def _every(self, seconds: float, fn: Any) -> None:
        pc = PeriodicCallback(fn, seconds * 1000)
        pc.start()
        self._periodic.append(pc)

    def _extra_status(self) -> dict[str, Any]:
        m = self.config.me
        return {
            "name": m.name,
            "keys": len(self.store),
            "revision": self.store.revision,
            "members": [
                {"id": x.id, "name": x.name, "client": str(x.client), "peer": str(x.peer)}
                for x in self.config.cluster
            ],
        }

    def _status_line(self) -> str:
        n = self.node
        return (
            f"role={n.role.value} term={n.term} leader={n.leader_id} "
            f"commit={n.commit_index} applied={n.applied_index}"
        )

    def _send_status(self) -> None:
        self.notifier.status(self._status_line())

    def _fatal(self, exc: BaseException) -> None:
        self._exit_code = 1
        self._tasks.add(asyncio.ensure_future(self.shutdown(transfer=False)))

    def request_shutdown(self, signame: str) -> None:
        log.info("shutdown requested", extra={"fields": {"signal": signame}})
        self._tasks.add(asyncio.ensure_future(self.shutdown(transfer=True)))

    async def shutdown(self, transfer: bool) -> None:
        if self._shutting_down:
            return
        self._shutting_down = True
        try:
            await self._shutdown(transfer)
        except Exception:
            log.exception("error during shutdown")
            self._exit_code = 1
        finally:
            self._stopped.set()

    async def _shutdown(self, transfer: bool) -> None:
        self.notifier.stopping()
        if self.client_server is not None:
            self.client_server.close()
        timeout = self.config.timing.shutdown_transfer_seconds if transfer else 0.0
        await self.lessor.stop()
        await self.node.stop(transfer_timeout=timeout)
        # Kept-alive client connections outlive the listener: answer what they still carry
        # (503 from here on: the node is stopping) before the store closes under them.
        if self.client_api is not None and not await self.client_api.close_connections(2.0):
            log.warning("client requests still in flight at exit")
        self.store.close()
        for pc in self._periodic:
            pc.stop()
        if self.health_server is not None:
            self.health_server.stop()

    async def _stop_after_failed_start(self) -> None:
        if self.client_server is not None:
            self.client_server.close()
        if self.health_server is not None:
            self.health_server.stop()
        try:
            await self.lessor.stop()
            await self.node.stop()
            self.store.close()
        except Exception:
            log.debug("cleanup after failed start", exc_info=True)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_shutdown, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        try:
            await self.start()
        except (OSError, StorageError) as e:
            # The usual causes (a port in use, a locked or corrupt data directory) need no trace.
            log.error("startup failed", extra={"fields": {"error": str(e)}})
            await self._stop_after_failed_start()
            return 1
        except Exception:
            log.exception("startup failed")
            await self._stop_after_failed_start()
            return 1
        await self._stopped.wait()
        self.notifier.close()
        return self._exit_code


def raise_descriptor_limit(limits: Limits) -> int:
    """Raise this process's soft RLIMIT_NOFILE to fit the connection caps (as Go does at
    start), up to the hard limit; warn when even the hard limit is too low. Returns the soft
    limit now in force."""
    needed = limits.max_connections + limits.max_health_connections + DESCRIPTORS_BESIDES_CLIENTS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        log.warning(
            "descriptor limit below the connection caps",
            extra={
                "fields": {
                    "nofile_hard": hard,
                    "needed": needed,
                    "hint": "raise LimitNOFILE or lower limits.max_connections",
                }
            },
        )
    return target


def _role_label(role: Role | None) -> str:
    return role.label if role is not None else "none"


def _learn_client_address(settings: ClientApiSettings, change: ConfChange) -> None:
    """Writes are forwarded to whichever member leads: keep every member's client address."""
    if change.node_id not in change.result.members():
        settings.member_clients.pop(change.node_id, None)
    elif "client" in change.context:
        settings.member_clients[change.node_id] = Address.parse(change.context["client"])


def serve(config: NodeConfig) -> int:
    """Run the service until a signal stops it; returns the process exit code."""
    # First: every thread started from here on inherits the policy.
    problem = apply_policy(config.cpu_scheduling)
    if problem is not None:
        log.warning("CPU scheduling policy not applied", extra={"fields": {"error": problem}})
    try:
        failpoints = from_environment()
    except UnknownFailpoint as e:
        log.error("startup failed", extra={"fields": {"error": str(e)}})
        return 2
    for name in sorted(failpoints):
        log.warning(
            "failpoint on: a guarantee is broken on purpose",
            extra={"fields": {"failpoint": name, "breaks": KNOWN[name]}},
        )
    try:
        server = RaftnodeServer(config, failpoints=failpoints)
    except (OSError, StoreError) as e:
        log.error("startup failed", extra={"fields": {"error": str(e)}})
        return 1
    # uvloop: +25% writes/s at 64 connections over asyncio's own loop (A/B on loopback).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(server.run())
