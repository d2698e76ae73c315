"""The durable keeper syncs the store in the background after commits, paced and one at a time,
so that SQLite's own checkpoint (inside a commit, on the event loop) is not what keeps the WAL
in bounds."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from raftnode import state_keeping
from raftnode.kv.store import KeyValueStore
from raftnode.state_keeping import DurableKeeper, executor_runner
from tests.unit.kv.conftest import Applier


class CountingStore:
    """A durable state machine that counts commits and syncs; ``fail`` makes sync raise."""

    def __init__(self) -> None:
        self.applied_index = 0
        self.commits = 0
        self.syncs = 0
        self.fail = False

    def apply(self, index: int, data: bytes) -> Any:
        self.applied_index = index

    def commit(self, applied_index: int | None = None) -> None:
        self.commits += 1

    def sync(self) -> int:
        self.syncs += 1
        if self.fail:
            raise OSError("disk went away")
        return self.applied_index

    def snapshot_to(self, dest: Path) -> Any:
        raise NotImplementedError

    def stage_restore(self, src: Path) -> Any:
        raise NotImplementedError

    def finish_restore(self) -> None:
        raise NotImplementedError


async def _inline(fn: Any, *args: Any) -> Any:
    await asyncio.sleep(0)
    return fn(*args)


def test_a_commit_starts_one_background_sync_and_the_next_waits_for_the_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_keeping, "BACKGROUND_SYNC_SECONDS", 0.2)

    async def scenario() -> None:
        sm = CountingStore()
        keeper = DurableKeeper(sm, tmp_path, _inline)
        keeper.end_batch(1)
        assert len(keeper.tasks()) == 1
        keeper.end_batch(2)  # one at a time: no second sync while the first runs
        await asyncio.gather(*keeper.tasks())
        assert sm.syncs == 1 and keeper.tasks() == []
        for i in range(3, 10):  # within the interval: commits only
            keeper.end_batch(i)
            await asyncio.sleep(0)
        assert sm.commits == 9 and sm.syncs == 1
        await asyncio.sleep(0.25)
        keeper.end_batch(10)
        await asyncio.gather(*keeper.tasks())
        assert sm.syncs == 2

    asyncio.run(scenario())


def test_a_failed_background_sync_is_logged_and_the_next_one_still_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(state_keeping, "BACKGROUND_SYNC_SECONDS", 0.0)

    async def scenario() -> None:
        sm = CountingStore()
        sm.fail = True
        keeper = DurableKeeper(sm, tmp_path, _inline)
        keeper.end_batch(1)
        await asyncio.gather(*keeper.tasks())
        sm.fail = False
        keeper.end_batch(2)
        await asyncio.gather(*keeper.tasks())
        assert sm.syncs == 2

    with caplog.at_level(logging.WARNING, logger="raftnode.state_keeping"):
        asyncio.run(scenario())
    assert "background sync of the state machine failed: disk went away" in caplog.text


def test_commits_alone_make_the_real_store_durable_without_a_compaction(tmp_path: Path) -> None:
    async def scenario(store: KeyValueStore) -> None:
        with ThreadPoolExecutor(max_workers=1) as pool:
            keeper = DurableKeeper(store, tmp_path, executor_runner(pool))
            a = Applier(store)
            for _ in range(20):
                a.put("k", "v" * 100)
                keeper.end_batch(a.index)
                await asyncio.sleep(0.01)
            await asyncio.gather(*keeper.tasks())
            assert store.durable_index() > 0
            await asyncio.sleep(state_keeping.BACKGROUND_SYNC_SECONDS)
            a.put("k", "last")
            keeper.end_batch(a.index)
            await asyncio.gather(*keeper.tasks())
            assert store.durable_index() == store.applied_index == a.index

    with KeyValueStore.open(tmp_path / "kv.sqlite") as store:
        assert store.durable_index() == 0
        asyncio.run(scenario(store))
