"""The list-append workload (checked by ``chaos.elle``): transactions over a few keys whose
values are JSON lists that only grow.

Each client runs micro-transactions of 1..``max_ops`` reads and appends on distinct keys. The
store has put/get, so a transaction is optimistic: one read-only ``POST /txn`` (gets of every
key involved: values and ``mod_revision``s at one revision), then, when it appends, one
``POST /txn`` comparing every involved key's ``mod_revision`` with the one read (0: absent)
and putting ``list + [element]`` for each append. Compares that no longer hold: ``fail``
(nothing was written). Elements are unique per (client, counter).

Through raw HTTP (``chaos.http_client``; an ``idempotent_share`` of transactions carry an
``Idempotency-Key`` and are retried with it after an indeterminate answer, the others are sent
once) or through ``raftnode.client.AsyncClient`` (its own keys and retries);
``client_library=None`` alternates: odd-numbered clients use the library. ``broken`` drops
the compares (a blind put from a stale read): a lost-update bug the checker must catch.
Keys rotate every ``key_seconds`` so lists stay short.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from dataclasses import dataclass
from typing import Any

from raftnode.client import AsyncClient, Compare, TxnOp, Unavailable
from raftnode.client.errors import ClientError

from .history import Operation, Outcome
from .http_client import request
from .workload import Recorder, classify_write

# (outcome, the answer's JSON body when it was 200, a note)
Answered = tuple[Outcome, dict[str, Any] | None, str]


@dataclass(frozen=True)
class AppendConfig:
    endpoints: tuple[str, ...]
    run_id: str
    clients: int = 4
    keys: int = 3
    duration: float = 15.0
    timeout: float = 6.0
    think: float = 0.01
    max_ops: int = 3
    key_seconds: float = 10.0
    idempotent_share: float = 1.0
    attempts: int = 3
    client_library: bool | None = False
    broken: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ValueError("list-append workload: no endpoints")
        if not 1 <= self.clients <= 64:
            raise ValueError(f"list-append workload: clients must be 1..64, got {self.clients}")
        if not 1 <= self.max_ops <= self.keys:
            raise ValueError("list-append workload: max_ops must be 1..keys")
        if not 0.0 <= self.idempotent_share <= 1.0:
            raise ValueError("list-append workload: idempotent_share must be 0..1")
        if self.duration <= 0 or self.timeout <= 0 or self.key_seconds <= 0:
            raise ValueError("list-append workload: durations must be positive")

    def key(self, epoch: int, n: int) -> str:
        return f"chaos-{self.run_id}-la{epoch}-{n}"


class _Sender:
    """One transaction body to a definite-or-not outcome, raw HTTP or the client library."""

    def __init__(self, config: AppendConfig, rng: random.Random, library: bool) -> None:
        self.config = config
        self.rng = rng
        self.library = (
            AsyncClient(list(config.endpoints), timeout=config.timeout) if library else None
        )

    async def close(self) -> None:
        if self.library is not None:
            await self.library.close()

    async def txn(self, body: dict[str, Any]) -> Answered:
        if self.library is not None:
            return await self._library_txn(body)
        keyed = self.rng.random() < self.config.idempotent_share
        headers = {"Idempotency-Key": uuid.uuid4().hex} if keyed else {}
        notes: list[str] = []
        outcomes: list[Outcome] = []
        for _ in range(self.config.attempts if keyed else 1):
            endpoint = self.rng.choice(self.config.endpoints)
            answer = await request(
                endpoint, "POST", "/txn", body, headers, timeout=self.config.timeout
            )
            outcomes.append(classify_write(answer))
            notes.append(f"status={answer.status} {answer.error}".strip())
            if outcomes[-1] == "ok":
                return "ok", answer.json(), " | ".join(notes)
            if outcomes[-1] == "fail":
                break
        outcome: Outcome = "fail" if set(outcomes) == {"fail"} else "info"
        return outcome, None, " | ".join(notes)

    async def _library_txn(self, body: dict[str, Any]) -> Answered:
        assert self.library is not None
        compares = [Compare(**c) for c in body["compare"]]
        success = [TxnOp(**o) for o in body["success"]]
        try:
            result = await self.library.txn(compares, success)
        except Unavailable as e:
            return ("info" if e.maybe_applied else "fail"), None, f"client: {e}"
        except ClientError as e:  # a refusal: nothing was written
            return "fail", None, f"client: {e}"
        results = [
            {
                "op": r.op,
                "key": r.key,
                "found": r.found,
                "value": r.value,
                "mod_revision": r.mod_revision,
            }
            for r in result.responses
        ]
        return "ok", {"succeeded": result.succeeded, "results": results}, "client"


class AppendClient:
    def __init__(
        self, number: int, config: AppendConfig, recorder: Recorder, started: float
    ) -> None:
        self.name = f"a{number}"
        self.config = config
        self.recorder = recorder
        self.started = started
        self.rng = random.Random(f"{config.seed}-append-{number}")
        library = config.client_library
        self.sender = _Sender(config, self.rng, number % 2 == 1 if library is None else library)
        self.counter = 0
        self.keys_used: set[str] = set()

    async def run(self, deadline: float) -> None:
        try:
            while self.recorder.clock() < deadline:
                await self.one_txn()
                await asyncio.sleep(self.rng.uniform(0, 2 * self.config.think))
        finally:
            await self.sender.close()

    def _plan(self) -> list[tuple[str, str, str | None]]:
        epoch = int((self.recorder.clock() - self.started) / self.config.key_seconds)
        count = self.rng.randint(1, self.config.max_ops)
        keys = self.rng.sample(range(self.config.keys), count)
        plan: list[tuple[str, str, str | None]] = []
        for n in keys:
            key = self.config.key(epoch, n)
            self.keys_used.add(key)
            if self.rng.random() < 0.5:
                plan.append(("r", key, None))
            else:
                self.counter += 1
                plan.append(("append", key, f"{self.name}-{self.counter}"))
        return plan

    async def one_txn(self) -> None:
        plan = self._plan()
        invoke = self.recorder.clock()
        outcome, seen, note = await read_lists(self.sender, [k for _, k, _ in plan])
        if outcome == "ok" and any(f == "append" for f, _, _ in plan):
            outcome, note = await self._write(plan, seen)
        mops = [
            [f, k, v if f == "append" else (seen[k][0] if outcome == "ok" else None)]
            for f, k, v in plan
        ]
        self.recorder.add(
            Operation(
                self.name,
                "txn",
                invoke,
                self.recorder.clock(),
                outcome,
                result=mops,
                note=note,
            )
        )

    async def _write(
        self, plan: list[tuple[str, str, str | None]], seen: dict[str, tuple[list[str], int]]
    ) -> tuple[Outcome, str]:
        compare = [
            {"key": k, "target": "mod_revision", "op": "equal", "value": seen[k][1]}
            for _, k, _ in plan
        ]
        success = [
            {"op": "put", "key": k, "value": json.dumps([*seen[k][0], v])}
            for f, k, v in plan
            if f == "append"
        ]
        body = {"compare": [] if self.config.broken else compare, "success": success}
        outcome, answer, note = await self.sender.txn(body)
        if outcome == "ok" and not (answer or {}).get("succeeded"):
            return "fail", note + " compare-failed"
        return outcome, note


async def read_lists(
    sender: _Sender, keys: list[str]
) -> tuple[Outcome, dict[str, tuple[list[str], int]], str]:
    """Every key's list and ``mod_revision`` (absent: [] and 0) at one revision."""
    body = {"compare": [], "success": [{"op": "get", "key": k} for k in keys]}
    outcome, answer, note = await sender.txn(body)
    if outcome != "ok" or answer is None:
        # A read that did not answer wrote nothing: the transaction did nothing.
        return "fail", {}, note + " read-failed"
    seen: dict[str, tuple[list[str], int]] = {}
    for item in answer.get("results", []):
        found = item.get("found")
        value = json.loads(item["value"]) if found else []
        seen[item["key"]] = (value, int(item.get("mod_revision") or 0) if found else 0)
    return "ok", seen, note


FINAL_READ_KEYS = 100
"""Keys per final read transaction: under the nodes' default ``limits.max_txn_ops`` (128). A long
run uses hundreds of keys (a client moves to fresh keys as lists grow), more than one
transaction may read."""


async def final_read(
    config: AppendConfig, recorder: Recorder, keys: list[str], within: float = 60.0
) -> None:
    """Every key used, read back after the workload: read-only transactions of at most
    FINAL_READ_KEYS keys each, every one retried until it answers, all within ``within``."""
    sender = _Sender(config, random.Random(config.seed), library=False)
    chunks = [keys[i : i + FINAL_READ_KEYS] for i in range(0, len(keys), FINAL_READ_KEYS)]
    last_note = ""
    try:
        started = recorder.clock()
        while chunks and recorder.clock() - started < within:
            invoke = recorder.clock()
            outcome, seen, note = await read_lists(sender, chunks[0])
            if outcome == "ok":
                mops = [["r", k, seen[k][0]] for k in chunks[0]]
                recorder.add(
                    Operation(
                        "final", "txn", invoke, recorder.clock(), "ok", result=mops, note=note
                    )
                )
                chunks.pop(0)
                continue
            last_note = note
            await asyncio.sleep(0.5)
    finally:
        await sender.close()
    if chunks:
        raise TimeoutError(
            f"no endpoint answered the final list read of {sum(map(len, chunks))} keys "
            f"within {within} s (last answer: {last_note})"
        )


async def run_list_append(config: AppendConfig, recorder: Recorder) -> list[Operation]:
    """Run the clients for ``config.duration``, then read every key back."""
    started = recorder.clock()
    clients = [AppendClient(n, config, recorder, started) for n in range(config.clients)]
    await asyncio.gather(*(c.run(started + config.duration) for c in clients))
    keys = sorted(set().union(*(c.keys_used for c in clients)))
    await final_read(config, recorder, keys)
    return recorder.operations
