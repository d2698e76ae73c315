"""A node's first start: what it finds on disk, or a new cluster's first configuration.

An empty data directory with ``initial_cluster_state: new`` bootstraps: the initial members
become the log's first entry (the same on every member, so all logs agree on it) and the cluster
id is derived from them and the token. With ``existing`` the node waits for the leader to send
its state. Anything else on disk is loaded as it is.
"""

from __future__ import annotations

import dataclasses
import logging

from raftnode.node_options import NodeOptions
from raftnode.raft.core import RaftCore
from raftnode.raft.types import HardState
from raftnode.storage.cluster_identity import bootstrap_cluster_id
from raftnode.storage.log_store import LogStore, PersistedState

log = logging.getLogger("raftnode.node")


async def load_or_bootstrap(log_store: LogStore, options: NodeOptions) -> PersistedState:
    """The persisted state to start from, bootstrapping a new cluster when that is asked for."""
    state = await log_store.load()
    if not state.is_empty:
        return state
    if options.initial_cluster_state != "new":
        log.info("empty data directory: waiting for the cluster's leader to send its state")
        return state
    entries = RaftCore.bootstrap_entries(options.members)
    hard_state = HardState(term=1, commit=1)
    await log_store.persist(entries, hard_state)
    cluster_id = bootstrap_cluster_id(options.members, options.initial_cluster_token)
    await log_store.save_cluster_id(cluster_id)
    fields = {"voters": sorted(options.members), "cluster_id": cluster_id.hex()}
    log.info("bootstrapped new cluster", extra={"fields": fields})
    return dataclasses.replace(state, hard_state=hard_state, entries=entries, cluster_id=cluster_id)
