"""Concurrent clients recording a history against raftnode endpoints (asyncio, stdlib HTTP).

Each client loops until the deadline, one operation at a time, each on a random endpoint from
the list (the VIP and every node), with a short pause between operations:

- register operations on a few contended keys: put, get (linearizable, and some lease and
  stale reads), compare-and-set via ``prev_value`` against the last value the client saw, and
  an occasional delete; every written value is unique;
- set adds: a unique element per add, stored as its own key under the set's prefix with
  ``prev_value: null``; read back at the end with one linearizable prefix listing.

Some writes carry an ``Idempotency-Key`` and are retried with it after an indeterminate
answer, until a definite one or the retry bound: the attempts are one logical operation
(ok if any attempt was, fail only if every attempt certainly did nothing, else info).
With ``client_library`` (None: every odd-numbered client) a client sends everything through
``raftnode.client.AsyncClient`` instead, which retries and keys every write itself
(``chaos.library_client``, where its errors map to the same outcomes).

Classification (``chaos.classify``): 200 (404 for a read) ok; 409 CAS mismatch, a refused
connection and raftnode's documented 503 (JSON ``unavailable``: nothing was done) and 507
``disk_full`` (refused before proposing) fail; timeouts, 504, other 5xx and a connection lost
after sending info.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .classify import classify_read, classify_write
from .history import Operation, Outcome
from .http_client import Answer, request
from .library_client import LibraryClient


@dataclass(frozen=True)
class WorkloadConfig:
    endpoints: tuple[str, ...]
    run_id: str
    clients: int = 8
    keys: int = 3
    duration: float = 60.0
    timeout: float = 6.0
    think: float = 0.02
    idempotent_share: float = 0.5
    idempotent_attempts: int = 3
    client_library: bool | None = False
    """Send through ``raftnode.client.AsyncClient`` (its own retries and idempotency keys)
    instead of raw HTTP; None: odd-numbered clients do, even-numbered ones use raw HTTP."""
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ValueError("workload: no endpoints")
        if not 1 <= self.clients <= 64:
            raise ValueError(f"workload: clients must be 1..64, got {self.clients}")
        if self.duration <= 0 or self.timeout <= 0:
            raise ValueError("workload: duration and timeout must be positive")

    @property
    def register_keys(self) -> list[str]:
        return [f"chaos-{self.run_id}-r{n}" for n in range(self.keys)]

    @property
    def set_prefix(self) -> str:
        return f"chaos-{self.run_id}-set/"


def _note(answer: Answer) -> str:
    parts = [f"status={answer.status}"]
    if answer.error:
        parts.append(answer.error.replace(" ", "_"))
    if "x-raftnode-revision" in answer.headers:
        parts.append(f"rev={answer.headers['x-raftnode-revision']}")
    if answer.headers.get("idempotent-replayed") == "true":
        parts.append("replayed")
    return " ".join(parts)


class Recorder:
    """Appends operations with times on one monotonic clock (shared with the nemesis)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.operations: list[Operation] = []

    def add(self, op: Operation) -> None:
        self.operations.append(op)


class Client:
    def __init__(self, number: int, config: WorkloadConfig, recorder: Recorder) -> None:
        self.name = str(number)
        self.config = config
        self.recorder = recorder
        self.rng = random.Random(f"{config.seed}-{number}")
        self.last_seen: dict[str, str | None] = {}
        self.counter = 0
        library = config.client_library
        # The library stays on the endpoint that answered last: each client starts on another.
        first = number % len(config.endpoints)
        rotated = config.endpoints[first:] + config.endpoints[:first]
        self.library = (
            LibraryClient(rotated, config.timeout, config.idempotent_attempts)
            if (number % 2 == 1 if library is None else library)
            else None
        )

    def _unique(self) -> str:
        self.counter += 1
        return f"{self.config.run_id}-c{self.name}-{self.counter}"

    async def run(self, deadline: float) -> None:
        try:
            while self.recorder.clock() < deadline:
                await self.one_operation()
                await asyncio.sleep(self.rng.uniform(0, 2 * self.config.think))
        finally:
            if self.library is not None:
                await self.library.close()

    async def one_operation(self) -> None:
        key = self.rng.choice(self.config.register_keys)
        endpoint = self.rng.choice(self.config.endpoints)
        roll = self.rng.random()
        if roll < 0.30:
            await self.get(endpoint, key, "linearizable")
        elif roll < 0.36:
            await self.get(endpoint, key, "lease")
        elif roll < 0.42:
            await self.get(endpoint, key, "stale")
        elif roll < 0.62:
            await self.write(endpoint, "put", key, self._unique())
        elif roll < 0.82:
            await self.write(endpoint, "cas", key, self._unique(), self.last_seen.get(key))
        elif roll < 0.84:
            await self.write(endpoint, "delete", key, None)
        else:
            await self.write(endpoint, "add", self.config.set_prefix + self._unique(), None)

    async def get(self, endpoint: str, key: str, consistency: str) -> None:
        invoke = self.recorder.clock()
        if self.library is not None:
            done = await self.library.get(key, consistency)
            outcome, result, endpoint, note = done.outcome, done.result, done.endpoint, done.note
        else:
            answer = await request(
                endpoint,
                "GET",
                f"/kv/{quote(key)}?consistency={consistency}",
                timeout=self.config.timeout,
            )
            outcome, result, note = classify_read(answer), None, _note(answer)
            if answer.status == 200:
                body = answer.json()
                result = body.get("value") if isinstance(body, dict) else None
        complete = self.recorder.clock()
        if outcome == "ok":
            self.last_seen[key] = result
        self.recorder.add(
            Operation(
                self.name,
                "get",
                invoke,
                complete,
                outcome,
                key=key,
                result=result,
                consistency=consistency,
                endpoint=endpoint,
                note=note,
            )
        )

    async def write(
        self, endpoint: str, kind: str, key: str, value: str | None, expected: str | None = None
    ) -> None:
        invoke = self.recorder.clock()
        if self.library is not None:
            done = await self.library.write(kind, key, value, expected)
            outcome, endpoint, note = done.outcome, done.endpoint, done.note
        else:
            outcome, endpoint, note = await self._raw_write(endpoint, kind, key, value, expected)
        complete = self.recorder.clock()
        if kind in {"put", "cas"} and outcome == "ok":
            self.last_seen[key] = value
        if kind == "delete" and outcome == "ok":
            self.last_seen[key] = None
        record_kind = "add" if kind == "add" else kind
        self.recorder.add(
            Operation(
                self.name,
                record_kind,
                invoke,
                complete,
                outcome,
                key=self.config.set_prefix if kind == "add" else key,
                value=key[len(self.config.set_prefix) :] if kind == "add" else value,
                expected=expected,
                endpoint=endpoint,
                note=note,
            )
        )

    async def _raw_write(
        self, endpoint: str, kind: str, key: str, value: str | None, expected: str | None
    ) -> tuple[Outcome, str, str]:
        """(outcome, the last endpoint tried, note) of a write over raw HTTP."""
        method, path, body = _write_request(kind, key, value, expected)
        keyed = kind != "delete" and self.rng.random() < self.config.idempotent_share
        headers = {"Idempotency-Key": uuid.uuid4().hex} if keyed else {}
        attempts = self.config.idempotent_attempts if keyed else 1
        outcomes: list[Outcome] = []
        notes: list[str] = []
        for attempt in range(attempts):
            if attempt:
                endpoint = self.rng.choice(self.config.endpoints)
            answer = await request(
                endpoint, method, path, body, headers, timeout=self.config.timeout
            )
            outcomes.append(classify_write(answer))
            notes.append(_note(answer))
            if outcomes[-1] != "info":
                break
        outcome: Outcome = (
            "ok" if "ok" in outcomes else "fail" if set(outcomes) == {"fail"} else "info"
        )
        return outcome, endpoint, " | ".join(notes) + (" idem" if keyed else "")


def _write_request(
    kind: str, key: str, value: str | None, expected: str | None
) -> tuple[str, str, Any]:
    if kind == "put":
        return "POST", "/kv", {"key": key, "value": value}
    if kind == "cas":
        return "POST", "/kv", {"key": key, "value": value, "prev_value": expected}
    if kind == "delete":
        return "DELETE", f"/kv/{quote(key)}", None
    if kind == "add":  # one key per element, created only if absent
        return "POST", "/kv", {"key": key, "value": "1", "prev_value": None}
    raise ValueError(f"unknown write kind {kind!r}")


SET_PAGE = 5000
"""Keys per page of the final set read (a long run adds tens of thousands of elements)."""


async def read_set(
    config: WorkloadConfig, recorder: Recorder, attempts_deadline: float = 120.0
) -> None:
    """The final linearizable read of the set, page by page (``start_after``) from one
    endpoint; a page that fails starts the read again on the next endpoint, until
    ``attempts_deadline``. The workload has stopped, so the pages see one state."""
    started = recorder.clock()
    last_error = "no attempt"
    while recorder.clock() - started < attempts_deadline:
        for endpoint in config.endpoints:
            invoke = recorder.clock()
            elements, last_error = await _read_set_pages(config, endpoint)
            if elements is not None:
                recorder.add(
                    Operation(
                        "final",
                        "read_set",
                        invoke,
                        recorder.clock(),
                        "ok",
                        key=config.set_prefix,
                        result=elements,
                        endpoint=endpoint,
                        note=last_error,
                    )
                )
                return
        await asyncio.sleep(1.0)
    raise TimeoutError(
        f"no endpoint answered the final set read within {attempts_deadline} s (last: {last_error})"
    )


async def _read_set_pages(config: WorkloadConfig, endpoint: str) -> tuple[list[str] | None, str]:
    """Every element from one endpoint (None and why when a page fails), and a note."""
    elements: list[str] = []
    cursor = ""
    pages = 0
    while True:
        after = f"&start_after={quote(cursor)}" if cursor else ""
        answer = await request(
            endpoint,
            "GET",
            f"/kv?prefix={quote(config.set_prefix)}&limit={SET_PAGE}{after}",
            timeout=config.timeout,
        )
        body = answer.json()
        if answer.status != 200 or not isinstance(body, dict):
            return None, f"page {pages + 1} from {endpoint}: {_note(answer)}"
        items = body.get("items", [])
        elements += [item["key"][len(config.set_prefix) :] for item in items]
        pages += 1
        if not body.get("more"):
            return elements, f"{pages} pages {_note(answer)}"
        if not items:
            return None, f"page {pages} from {endpoint}: more without items"
        cursor = items[-1]["key"]


async def run_workload(config: WorkloadConfig, recorder: Recorder) -> list[Operation]:
    """Run the clients until ``config.duration`` has passed, then read the set back."""
    deadline = recorder.clock() + config.duration
    clients = [Client(n, config, recorder) for n in range(config.clients)]
    await asyncio.gather(*(c.run(deadline) for c in clients))
    await read_set(config, recorder)
    return recorder.operations


def endpoints_of(urls: Sequence[str]) -> tuple[str, ...]:
    cleaned = tuple(u.rstrip("/") for u in urls if u.strip())
    for url in cleaned:
        if not url.startswith("http://"):
            raise ValueError(f"endpoint {url!r}: only http:// URLs")
    return cleaned
