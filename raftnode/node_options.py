"""How to run one node: ``NodeOptions``, and the one translation from a validated YAML
configuration (``NodeConfig``, whose defaults live in ``raftnode.defaults``) to them;
``raftnode.embed`` re-exports it for applications."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from raftnode.config import Address, NodeConfig
from raftnode.defaults import Snapshot as SnapshotDefaults
from raftnode.defaults import Timing
from raftnode.raft.config import RaftConfig
from raftnode.transport.auth import MIN_VERSION
from raftnode.transport.peer_tls import PeerTlsSettings

Clock = Callable[[], float]
"""Seconds from a monotonic clock; dates the leader's heartbeat rounds for the lease."""

LeaderListener = Callable[[int, int], None]
"""Called with (leader_id, term) whenever the known leader changes (0 = none known)."""


@dataclass(frozen=True, slots=True)
class NodeOptions:
    """How to run one node. ``members`` maps every initial voter (this node too) to its
    peer address; it only matters the first time a data directory is used, and only when
    ``initial_cluster_state`` is ``"new"`` (etcd's meaning): a node started as ``"existing"``
    with an empty data directory never bootstraps; it waits for the leader to contact it."""

    node_id: int
    data_dir: Path
    listen_peer: Address
    members: Mapping[int, Address]
    secret: bytes
    tick_seconds: float = Timing().tick_seconds
    election_ticks: int = Timing().election_ticks
    heartbeat_ticks: int = Timing().heartbeat_ticks
    snapshot_every_entries: int = SnapshotDefaults().every_entries
    initial_cluster_state: Literal["new", "existing"] = "new"
    initial_cluster_token: str = ""
    """Mixed into the id of a bootstrapped cluster: give clusters with the same members
    different tokens (etcd's --initial-cluster-token)."""
    peer_tls: PeerTlsSettings | None = None
    """Mutual TLS 1.3 between peers (``peer_tls:``); None: the HMAC hello over plain TCP."""
    failpoints: frozenset[str] = frozenset()
    """Guarantees broken on purpose, for testing the checkers (``raftnode.failpoints``)."""
    peer_min_protocol: int = MIN_VERSION
    """The oldest peer protocol version spoken (``peer_min_protocol:``)."""

    def raft_config(self) -> RaftConfig:
        """The core's configuration for these options (its other tunables at their defaults)."""
        return RaftConfig(
            node_id=self.node_id,
            election_ticks=self.election_ticks,
            heartbeat_ticks=self.heartbeat_ticks,
            tick_seconds=self.tick_seconds,
        )


def options_from_config(
    config: NodeConfig, failpoints: frozenset[str] = frozenset()
) -> NodeOptions:
    """``NodeOptions`` from a validated raftnode YAML config (peer addresses, timing, secret),
    with the failpoints of the environment (never from the file)."""
    if config.secret is None and not config.insecure and config.peer_tls is None:
        raise ValueError("a cluster secret is required unless the config says insecure: true")
    return NodeOptions(
        node_id=config.node_id,
        data_dir=config.data_dir,
        listen_peer=config.listen_peer,
        members={m.id: m.peer for m in config.cluster},
        secret=config.secret or b"",
        tick_seconds=config.timing.tick_seconds,
        election_ticks=config.timing.election_ticks,
        heartbeat_ticks=config.timing.heartbeat_ticks,
        snapshot_every_entries=config.snapshot.every_entries,
        initial_cluster_state="existing" if config.initial_cluster_state == "existing" else "new",
        initial_cluster_token=config.initial_cluster_token,
        peer_tls=config.peer_tls,
        failpoints=failpoints,
        peer_min_protocol=config.peer_min_protocol,
    )
