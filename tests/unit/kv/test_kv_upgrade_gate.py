"""The service proposes nothing an older member could not apply: with one member speaking an
older peer protocol, transactions and revision compares are refused (and no format upgrade is
proposed); once every member speaks 4, the first write upgrades the stores and they work."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from raftnode.kv.commands import Command, CommandResult, Compare, Txn, TxnOp, TxnResult
from raftnode.kv.service import KeyValueService, UpgradeInProgress
from raftnode.kv.store import KeyValueStore
from raftnode.testing import make_cluster, run_virtual

TXN = Txn((Compare("k", "exists", "equal", False),), (TxnOp("put", "k", "v"),))


def test_new_kinds_wait_until_every_member_speaks_protocol_4(tmp_path: Path) -> None:
    async def scenario() -> None:
        def store(node_id: int) -> KeyValueStore:
            return KeyValueStore.open(tmp_path / f"n{node_id}.sqlite")

        async with await make_cluster(3, store, data_dir=tmp_path) as cluster:
            cluster.network.versions[3] = 2  # node 3 runs the release before negotiation
            leader = await cluster.wait_for_leader()
            service = KeyValueService(
                leader, cluster.state_machines[leader.node_id], leader_wait=1.0
            )
            deadline = time.monotonic() + 5.0
            with pytest.raises(UpgradeInProgress, match="node 3"):
                await service.write(TXN, deadline)
            with pytest.raises(UpgradeInProgress, match="peer protocol 4"):
                await service.write(Command("put", "k", "v", prev_revision=0), deadline)
            plain = await service.write(Command("put", "a", "1"), deadline)
            assert isinstance(plain, CommandResult) and plain.ok and plain.key_revisions is None
            assert not any(s.counts_versions for s in cluster.state_machines.values())

            del cluster.network.versions[3]  # node 3 upgraded
            after = await service.write(Command("put", "a", "2"), deadline)
            assert isinstance(after, CommandResult) and after.key_revisions is not None
            assert after.key_revisions.version == 2  # counted from the upgrade: 1, then 2
            result = await service.write(TXN, deadline)
            assert isinstance(result, TxnResult) and result.succeeded
            target = leader.applied_index
            for _ in range(100):  # bounded, in virtual time: followers apply up to the leader
                if all(n.applied_index >= target for n in cluster.nodes.values()):
                    break
                await asyncio.sleep(0.05)
            for s in cluster.state_machines.values():
                record = s.get("a")
                assert s.counts_versions and record is not None and record.version == 2

    run_virtual(scenario())
