"""The list-append workload's final read: every key read back, in transactions the nodes accept
(at most FINAL_READ_KEYS gets each, under limits.max_txn_ops), each retried until it answers."""

from __future__ import annotations

import asyncio

import pytest

from chaos import list_append
from chaos.list_append import FINAL_READ_KEYS, AppendConfig, final_read
from chaos.workload import Recorder


def test_hundreds_of_keys_are_read_in_accepted_chunks_each_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = [f"k{i:03}" for i in range(2 * FINAL_READ_KEYS + 40)]
    asked: list[list[str]] = []

    async def fake_read(sender: object, chunk: list[str]) -> tuple[str, dict, str]:
        asked.append(chunk)
        assert len(chunk) <= FINAL_READ_KEYS <= 128
        if len(asked) % 2 == 1:  # every chunk fails once (a 503), then answers
            return "fail", {}, "status=503 read-failed"
        return "ok", {k: ([f"v-{k}"], 7) for k in chunk}, "status=200"

    monkeypatch.setattr(list_append, "read_lists", fake_read)
    monkeypatch.setattr(list_append.asyncio, "sleep", _no_sleep)
    recorder = Recorder()
    config = AppendConfig(endpoints=("http://127.0.0.1:1",), run_id="t")
    asyncio.run(final_read(config, recorder, keys))
    finals = [op for op in recorder.operations if op.process == "final"]
    assert [len(op.result or []) for op in finals] == [100, 100, 40]
    read_back = [mop[1] for op in finals for mop in op.result or []]
    assert read_back == keys
    assert len(asked) == 6


def test_a_chunk_that_never_answers_fails_the_run_naming_the_last_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def refused(sender: object, chunk: list[str]) -> tuple[str, dict, str]:
        return "fail", {}, "status=400 read-failed"

    monkeypatch.setattr(list_append, "read_lists", refused)
    monkeypatch.setattr(list_append.asyncio, "sleep", _no_sleep)
    config = AppendConfig(endpoints=("http://127.0.0.1:1",), run_id="t")
    with pytest.raises(TimeoutError, match=r"3 keys within 0\.05 s \(last answer: status=400"):
        asyncio.run(final_read(config, Recorder(), ["a", "b", "c"], within=0.05))


_real_sleep = asyncio.sleep


async def _no_sleep(seconds: float) -> None:
    await _real_sleep(0.001)
