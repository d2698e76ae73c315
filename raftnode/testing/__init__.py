"""Test doubles for raftnode and for applications that embed it: never use them in production.

What raftnode's own simulation runs on, shipped so that an embedding's tests can run a whole
cluster in one process, deterministically and without waiting (hashicorp/raft ships
``InmemStore``, ``InmemTransport`` and ``MakeCluster`` for the same reason):

- ``make_cluster`` / ``Cluster`` (``cluster.py``): real ``RaftNode`` runtimes around your state
  machines, with helpers to wait for a leader, propose, partition and heal, crash and restart.
- ``run_virtual`` / ``VirtualTimeLoop`` (``virtual_time.py``): an event loop whose clock jumps
  to the next timer, so elections and timeouts cost no wall-clock time.
- ``MemoryLogStore`` / ``MemoryDisk`` (``memory_log.py``): a ``LogStore`` that keeps everything
  in memory (what "survives" a crash is what it was told to persist).
- ``MemoryNetwork`` / ``MemoryCarrier`` (``memory_network.py``): a ``MessageCarrier`` between
  nodes of one process, with cut links and partitions.

Nothing here is durable, authenticated or reachable from another process.
"""

from raftnode.testing.cluster import Cluster, ClusterFailure, make_cluster
from raftnode.testing.memory_log import MemoryDisk, MemoryLogStore
from raftnode.testing.memory_network import MemoryCarrier, MemoryNetwork
from raftnode.testing.virtual_time import Deadlock, VirtualTimeLoop, run_virtual

__all__ = [
    "Cluster",
    "ClusterFailure",
    "Deadlock",
    "MemoryCarrier",
    "MemoryDisk",
    "MemoryLogStore",
    "MemoryNetwork",
    "VirtualTimeLoop",
    "make_cluster",
    "run_virtual",
]
