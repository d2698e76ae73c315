"""A whole Raft cluster in one process, for tests: never use it in production.

``make_cluster(3, Counter)`` starts three real ``RaftNode`` runtimes, each with its own state
machine (``Counter(node_id)``), on an in-memory log store and network on the running event loop.
Run the test on a ``VirtualTimeLoop`` (``run_virtual``) and elections, heartbeats and timeouts
take no wall-clock time and replay the same way every run::

    async def scenario() -> None:
        async with await make_cluster(3, lambda node_id: Counter()) as cluster:
            leader = await cluster.wait_for_leader()
            assert await cluster.propose(b'{"by": 5}') == 5
            cluster.isolate(leader.node_id)
            new = await cluster.wait_for_leader(excluding=[leader.node_id])
            ...
            cluster.heal()

    run_virtual(scenario())

Nodes crash (``crash``: nothing more is persisted, sent or answered) and come back (``restart``:
a new runtime and a new state machine on what the crashed one made durable). Every wait is
bounded by the timeout it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Collection
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

from raftnode.config import Address
from raftnode.metrics import NodeMetrics
from raftnode.node import NodeOptions, NotLeader, RaftNode
from raftnode.state_keeping import DurableStateMachine, StateMachine
from raftnode.testing.memory_log import MemoryDisk, MemoryLogStore
from raftnode.testing.memory_network import MemoryNetwork

S = TypeVar("S", bound=StateMachine | DurableStateMachine)
T = TypeVar("T")

NO_DATA_DIR = Path("/nonexistent/raftnode-testing")
"""Where an in-memory state machine's node would keep files: it never does."""


class ClusterFailure(AssertionError):
    """A node of the cluster failed (its runtime reported a fatal error)."""


async def run_inline(fn: Callable[..., T], *args: Any) -> T:
    """The state machine's slow calls run on the loop, so that a run replays exactly."""
    return fn(*args)


class Cluster(Generic[S]):
    """The nodes of one in-memory cluster, with what a test does to them.

    ``nodes`` and ``state_machines`` hold the running runtime and state machine of each node
    (a crashed node's stay until it restarts); ``disks`` what each node made durable;
    ``network`` the messages between them.
    """

    def __init__(
        self,
        size: int,
        state_machine: Callable[[int], S],
        *,
        tick_seconds: float,
        election_ticks: int,
        snapshot_every_entries: int,
        latency: float,
        data_dir: Path | None,
        seed: int,
    ) -> None:
        if size < 1:
            raise ValueError(f"a cluster needs at least one node, not {size}")
        self.loop = asyncio.get_running_loop()
        self.network = MemoryNetwork(self.loop, latency)
        self.members = {i: Address("memory", i) for i in range(1, size + 1)}
        self.disks = {i: MemoryDisk() for i in self.members}
        self.nodes: dict[int, RaftNode] = {}
        self.state_machines: dict[int, S] = {}
        self.crashed: set[int] = set()
        self.failures: list[tuple[int, BaseException]] = []
        self._make_state_machine = state_machine
        self._tick_seconds = tick_seconds
        self._election_ticks = election_ticks
        self._snapshot_every = snapshot_every_entries
        self._data_dir = data_dir
        self._seed = seed
        self._starts = 0
        self._changed = asyncio.Event()

    # -- nodes -----------------------------------------------------------------------------

    async def start_node(self, node_id: int) -> RaftNode:
        """Start node ``node_id`` (again) on its disk, with a new state machine."""
        if node_id not in self.members:
            raise ValueError(f"node {node_id} is not one of {sorted(self.members)}")
        data_dir = NO_DATA_DIR
        sm = self._make_state_machine(node_id)
        if isinstance(sm, DurableStateMachine):
            if self._data_dir is None:
                raise ValueError("a DurableStateMachine keeps files: give make_cluster a data_dir")
            data_dir = self._data_dir / f"n{node_id}"
            data_dir.mkdir(parents=True, exist_ok=True)
        options = NodeOptions(
            node_id=node_id,
            data_dir=data_dir,
            listen_peer=self.members[node_id],
            members=self.members,
            secret=b"",
            tick_seconds=self._tick_seconds,
            election_ticks=self._election_ticks,
            snapshot_every_entries=self._snapshot_every,
        )
        self._starts += 1
        node = RaftNode(
            options,
            sm,
            metrics=NodeMetrics(),
            rng=random.Random(f"{self._seed}/{node_id}/{self._starts}"),
            on_fatal=lambda exc: self._on_fatal(node_id, exc),
            log_store=MemoryLogStore(self.disks[node_id]),
            carrier=self.network.carrier(node_id),
            clock=self.loop.time,
            run_blocking=run_inline,
        )
        node.add_leader_listener(lambda leader, term: self._changed.set())
        self.nodes[node_id] = node
        self.state_machines[node_id] = sm
        self.crashed.discard(node_id)
        await node.start()
        return node

    def crash(self, node_id: int) -> None:
        """Kill node ``node_id`` as a process dies: nothing more persisted, sent or answered."""
        if node_id in self.crashed:
            raise ValueError(f"node {node_id} has crashed already")
        self.crashed.add(node_id)
        self.nodes[node_id].abandon()
        self.network.detach(node_id)
        _close(self.state_machines[node_id])
        self._changed.set()

    async def restart(self, node_id: int) -> RaftNode:
        """Start a crashed node again from what it made durable."""
        if node_id not in self.crashed:
            raise ValueError(f"node {node_id} is running: crash it first")
        return await self.start_node(node_id)

    def running(self) -> list[RaftNode]:
        return [n for i, n in sorted(self.nodes.items()) if i not in self.crashed]

    # -- the network -----------------------------------------------------------------------

    def partition(self, *groups: list[int]) -> None:
        """Cut every link between nodes of different groups, until ``heal``."""
        self.network.partition(*groups)

    def isolate(self, node_id: int) -> None:
        """Cut node ``node_id`` off from every other node, until ``heal``."""
        self.network.isolate(node_id, self.members)

    def heal(self) -> None:
        self.network.heal()

    # -- waiting ---------------------------------------------------------------------------

    async def wait_for_leader(
        self, timeout: float = 10.0, *, excluding: Collection[int] = (), everyone: bool = False
    ) -> RaftNode:
        """The leader, once a majority of the cluster's nodes (it among them) know it; with
        ``excluding``, one that is none of those nodes (a new leader after cutting the old one
        off, which goes on believing it leads until it hears of a newer term); with
        ``everyone``, once every running node knows it (after a ``heal``, say).

        Woken by the nodes' leader changes, never polling; raises ``TimeoutError`` (with every
        node's view) when no leader is agreed within ``timeout`` seconds of loop time.
        """
        deadline = self.loop.time() + timeout
        while True:
            self._raise_failures()
            leader = self.agreed_leader(excluding, everyone)
            if leader is not None:
                return leader
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no leader agreed within {timeout} s: {self.describe()}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def agreed_leader(
        self, excluding: Collection[int] = (), everyone: bool = False
    ) -> RaftNode | None:
        """The running leader (none of ``excluding``) that a majority of all nodes, it
        included, take as leader (with ``everyone``, every running node)."""
        running = self.running()
        needed = len(running) if everyone else len(self.members) // 2 + 1
        for node in running:
            if node.node_id in excluding or not node.is_leader:
                continue  # two nodes may both believe they lead: count who follows each
            if sum(n.leader_id == node.node_id for n in running) >= needed:
                return node
        return None

    async def propose(self, data: bytes, timeout: float = 5.0) -> Any:
        """Propose ``data`` at the leader (waiting for one, and following leader changes) and
        return its state machine's result; raises as ``RaftNode.propose`` does."""
        deadline = self.loop.time() + timeout
        while True:
            leader = await self.wait_for_leader(max(0.0, deadline - self.loop.time()))
            try:
                return await leader.propose(data, max(0.0, deadline - self.loop.time()))
            except NotLeader:
                remaining = deadline - self.loop.time()
                if remaining <= 0:
                    raise
                self._changed.clear()  # the leader stepped down: wait for the next one
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)

    def describe(self) -> str:
        """Every node's role, term, leader and indexes, for a failure message."""
        return ", ".join(
            f"n{i}:crashed"
            if i in self.crashed
            else f"n{i}:{n.role.value} t{n.term} leader{n.leader_id} "
            f"commit{n.commit_index} applied{n.applied_index}"
            for i, n in sorted(self.nodes.items())
        )

    # -- failures and the end --------------------------------------------------------------

    def _on_fatal(self, node_id: int, exc: BaseException) -> None:
        self.failures.append((node_id, exc))
        self._changed.set()

    def _raise_failures(self) -> None:
        if self.failures:
            node_id, exc = self.failures[0]
            raise ClusterFailure(f"node {node_id} failed: {exc!r}") from exc

    async def stop(self) -> None:
        """Stop every running node (no leadership transfer), then report any node's failure."""
        for node_id, node in sorted(self.nodes.items()):
            if node_id not in self.crashed:
                await node.stop()
                _close(self.state_machines[node_id])
                self.crashed.add(node_id)
        self._raise_failures()

    async def __aenter__(self) -> Cluster[S]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _close(state_machine: object) -> None:
    """Close a state machine that holds files (``KeyValueStore``): the protocols have no
    ``close``, but a store must let go of its files before it is opened again."""
    close = getattr(state_machine, "close", None)
    if callable(close):
        close()


async def make_cluster(
    size: int,
    state_machine: Callable[[int], S],
    *,
    tick_seconds: float = 0.05,
    election_ticks: int = 10,
    snapshot_every_entries: int = 1000,
    latency: float = 0.001,
    data_dir: Path | None = None,
    seed: int = 0,
) -> Cluster[S]:
    """Start ``size`` nodes (ids 1..size) of a new cluster on the running loop.

    ``state_machine(node_id)`` makes each node's state machine (again at each restart).
    ``latency`` is the network's one-way delay in seconds; ``seed`` seeds the nodes' election
    timeouts (same seed, same run, on a ``VirtualTimeLoop``). A ``DurableStateMachine`` keeps its
    files under ``data_dir/n<id>``.
    """
    cluster = Cluster(
        size,
        state_machine,
        tick_seconds=tick_seconds,
        election_ticks=election_ticks,
        snapshot_every_entries=snapshot_every_entries,
        latency=latency,
        data_dir=data_dir,
        seed=seed,
    )
    try:
        for node_id in cluster.members:
            await cluster.start_node(node_id)
    except BaseException:
        await cluster.stop()
        raise
    return cluster
