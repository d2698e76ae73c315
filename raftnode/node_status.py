"""What a node shows operators: the ``/status`` document, the member list of the admin API, the
gauges that are read rather than pushed, and the log lines and metrics of role changes.
Everything here reads the core's ``Status`` copy and the carrier's connection state; nothing
reaches into the core."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from raftnode.config import Address
from raftnode.metrics import NodeMetrics
from raftnode.raft.core import SoftState
from raftnode.raft.status import Role, Status
from raftnode.raft.types import NO_NODE

log = logging.getLogger("raftnode.node")


def member_rows(
    status: Status, peers: Mapping[int, Address], connected: Callable[[int], bool]
) -> list[dict[str, Any]]:
    """Every member with its role and address; on the leader also its match index, lag and
    whether it was heard from recently and its stream is up (``reachable``)."""
    rows: list[dict[str, Any]] = []
    conf = status.conf
    for member in sorted(conf.members()):
        address = peers.get(member)
        row: dict[str, Any] = {
            "id": member,
            "role": "voter" if member in conf.voters else "learner",
            "peer": str(address) if address is not None else None,
            "leader": member == status.leader_id,
        }
        if status.is_leader:
            pr = status.progress.get(member)
            match = status.last_index if member == status.id else (pr.match if pr else 0)
            row.update(
                match=match,
                lag=max(0, status.last_index - match),
                reachable=member == status.id
                or (pr is not None and pr.recently_active and connected(member)),
            )
        rows.append(row)
    return rows


def peer_rows(status: Status, connected: Callable[[int], bool]) -> list[dict[str, Any]]:
    """The other members as ``/status`` lists them."""
    rows: list[dict[str, Any]] = []
    for peer in sorted(status.conf.members() - {status.id}):
        row: dict[str, Any] = {
            "id": peer,
            "voter": peer in status.conf.voters,
            "connected": connected(peer),
        }
        pr = status.progress.get(peer)
        if pr is not None:
            row.update(
                match=pr.match,
                next=pr.next,
                lag=max(0, status.last_index - pr.match),
                active=pr.recently_active,
            )
        rows.append(row)
    return rows


def refresh_gauges(metrics: NodeMetrics, status: Status, connected: Callable[[int], bool]) -> None:
    """Replication lag per peer (leader only) and whether each peer's stream is up."""
    for peer in sorted(status.progress):
        lag = status.lag_of(peer)
        if lag is not None:
            metrics.replication_lag.labels(peer=str(peer)).set(lag)
    for peer in status.conf.members() - {status.id}:
        metrics.peer_connected.labels(peer=str(peer)).set(1 if connected(peer) else 0)


def show_soft_state(metrics: NodeMetrics, before: SoftState, now: SoftState) -> None:
    """Metrics and one log line for a change of role, term or leader."""
    metrics.term.set(now.term)
    metrics.set_role(now.role.value)
    metrics.set_leader(now.leader_id)
    fields = {"role": now.role.value, "term": now.term, "leader": now.leader_id}
    if before.role is not now.role:
        if now.role is Role.CANDIDATE:
            metrics.elections.inc()
        if now.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            log.info("election started", extra={"fields": fields})
        elif now.role is Role.LEADER:
            log.info("became leader", extra={"fields": fields})
        else:
            log.info("became follower", extra={"fields": fields})
    if before.leader_id != now.leader_id:
        if now.leader_id != NO_NODE:
            metrics.leader_changes.inc()
        log.info("leader changed", extra={"fields": {**fields, "previous": before.leader_id}})


def status_document(
    status: Status | None,
    connected: Callable[[int], bool],
    *,
    node_id: int,
    cluster_id: str,
    applied: int,
    snapshot_index: int,
    lag: int,
    quorum: bool | None,
    healthy: bool,
) -> dict[str, Any]:
    """The node as it sees itself and its peers (``/status``); ``status`` None before the
    node started."""
    role = status.role if status is not None else Role.FOLLOWER
    return {
        "id": node_id,
        "role": role.value,
        "membership": status.membership if status is not None else "not_joined",
        "cluster_id": cluster_id,
        "term": status.term if status is not None else 0,
        "leader": status.leader_id if status is not None else NO_NODE,
        "commit": status.commit if status is not None else 0,
        "applied": applied,
        "last_index": status.last_index if status is not None else 0,
        "snapshot_index": snapshot_index,
        "lag": lag,
        "quorum": quorum,
        "healthy": healthy,
        "voters": sorted(status.conf.voters) if status is not None else [],
        "peers": peer_rows(status, connected) if status is not None else [],
    }
