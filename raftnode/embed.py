"""Embedding API: run a Raft node inside your own Tornado application.

You supply a state machine; the node replicates the commands you propose and calls your
``apply`` on every member, in the same order. The raftnode key-value service is built on
exactly this API (``raftnode.kv.service``); ``examples/counter`` is a second, small one.

A state machine has three methods, all called on the IOLoop thread::

    class Counter:
        def __init__(self): self.value = 0
        def apply(self, index: int, data: bytes) -> int:     # a committed command
            self.value += int(data); return self.value        # result goes to propose()
        def snapshot(self) -> bytes: return str(self.value).encode()
        def restore(self, data: bytes) -> None: self.value = int(data or b"0")

Run a node and use it from your handlers::

    node = RaftNode(NodeOptions(node_id=1, data_dir=Path("/var/lib/app"),
                                listen_peer=Address("0.0.0.0", 9081),
                                members={1: Address("10.0.0.1", 9081), ...},
                                secret=b"at least 16 bytes of shared secret"),
                    Counter())
    await node.start()
    node.add_leader_listener(lambda leader, term: print("leader is now", leader))

    if node.is_leader:                       # or catch NotLeader and forward to node.leader_id
        total = await node.propose(b"5", timeout=5.0)        # -> Counter.apply's result
    await node.read_barrier("linearizable", timeout=5.0)     # then read your state directly
    ...
    await node.stop(transfer_timeout=3.0)    # hands leadership over first when leading

``propose`` raises ``NotLeader`` (nothing done; ``leader_id`` says where to go), ``Unavailable``
(nothing done, retry later) or ``OutcomeUnknown`` (it may still apply: check before retrying a
non-idempotent command). ``read_barrier`` takes ``"linearizable"`` (ReadIndex), ``"lease"``
(leader lease, no round trip) or ``"stale"`` (local state as is). Every wait is bounded by the
timeout you pass.
"""

from __future__ import annotations

from raftnode.config import Address, NodeConfig
from raftnode.node import (
    CONSISTENCY_LEVELS,
    NodeError,
    NodeOptions,
    NotLeader,
    OutcomeUnknown,
    RaftNode,
    StateMachine,
    Unavailable,
)

__all__ = [
    "CONSISTENCY_LEVELS",
    "Address",
    "NodeError",
    "NodeOptions",
    "NotLeader",
    "OutcomeUnknown",
    "RaftNode",
    "StateMachine",
    "Unavailable",
    "options_from_config",
]


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
        tick_seconds=config.timing.tick_ms / 1000,
        election_ticks=config.timing.election_ticks,
        heartbeat_ticks=config.timing.heartbeat_ticks,
        snapshot_every_entries=config.snapshot_every_entries,
    )
