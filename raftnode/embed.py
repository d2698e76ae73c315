"""Embedding API: run a Raft node inside your own Tornado application.

You supply a state machine; the node replicates the commands you propose and calls your
``apply`` on every member, in the same order. The raftnode key-value service is built on
exactly this API (``raftnode.kv.service``); ``examples/counter`` is a second, small one.

A state machine has three methods, all called on the event loop thread::

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
non-idempotent command). ``read_barrier`` takes a ``Consistency``: ``LINEARIZABLE`` (ReadIndex),
``LEASE`` (leader lease, no round trip) or ``STALE`` (local state as is); the plain strings
``"linearizable"``, ``"lease"`` and ``"stale"`` are the same values. Every wait is bounded by the
timeout you pass.

Test your application on a whole cluster in one process with ``raftnode.testing`` (test doubles,
never for production): real nodes around your state machines on an in-memory log store and
network, on an event loop whose clock jumps to the next timer, so elections and timeouts take no
wall-clock time and a seed replays exactly::

    from raftnode.testing import make_cluster, run_virtual

    async def scenario() -> None:
        async with await make_cluster(3, lambda node_id: Counter()) as cluster:
            leader = await cluster.wait_for_leader()
            assert await leader.propose(b"5", timeout=5.0) == 5
            cluster.isolate(leader.node_id)              # or partition([1], [2, 3]), crash(1)
            new = await cluster.wait_for_leader(excluding=[leader.node_id])
            cluster.heal()

    run_virtual(scenario())

``examples/counter/test_counter_service.py`` tests the counter's HTTP answers this way.
"""

from __future__ import annotations

from raftnode.config import Address
from raftnode.consistency import Consistency
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
from raftnode.node_options import options_from_config

__all__ = [
    "CONSISTENCY_LEVELS",
    "Address",
    "Consistency",
    "NodeError",
    "NodeOptions",
    "NotLeader",
    "OutcomeUnknown",
    "RaftNode",
    "StateMachine",
    "Unavailable",
    "options_from_config",
]
