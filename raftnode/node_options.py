"""From a validated YAML configuration to the runtime's ``NodeOptions``.

This is the one translation from ``NodeConfig`` (whose defaults live in ``raftnode.defaults``)
to what ``RaftNode`` runs with; ``raftnode.embed`` re-exports it for applications.
"""

from __future__ import annotations

from raftnode.config import NodeConfig
from raftnode.node import NodeOptions


def options_from_config(config: NodeConfig) -> NodeOptions:
    """``NodeOptions`` from a validated raftnode YAML config (peer addresses, timing, secret)."""
    if config.secret is None and not config.insecure:
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
    )
