"""A fake clock and fake transports for the client's retry tests: no sockets, no sleeping."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from raftnode.client.endpoints import Endpoint
from raftnode.client.retry import AttemptTimedOut, HttpAnswer, TransportError


class FakeClock:
    """Time that moves only when the client sleeps or an attempt "takes" time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


def answer(status: int, body: Any = None, **headers: str) -> HttpAnswer:
    data = json.dumps(body if body is not None else {}).encode()
    return HttpAnswer(status, {k.lower().replace("_", "-"): v for k, v in headers.items()}, data)


def ok_write(revision: int = 7, **headers: str) -> HttpAnswer:
    return answer(200, {"ok": True, "key": "k", "revision": revision, "created": True}, **headers)


REFUSED = TransportError("cannot connect: Connection refused", sent=False)
RESET = TransportError("connection lost: reset", sent=True)
TIMEOUT = AttemptTimedOut("no answer within 1 s")

Step = HttpAnswer | TransportError | Callable[["Sent"], HttpAnswer]


@dataclass(frozen=True)
class Sent:
    endpoint: str
    method: str
    path: str
    body: bytes | None
    headers: dict[str, str]
    timeout: float


@dataclass
class FakeTransport:
    """Answers each request from a script per endpoint (``port -> steps``); an endpoint whose
    script ran out (or has none) refuses connections. A ``TransportError`` step that is an
    ``AttemptTimedOut`` also moves the clock by the attempt's timeout."""

    clock: FakeClock
    scripts: dict[int, list[Step]] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    closed: bool = False

    def request(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: float,
    ) -> HttpAnswer:
        s = Sent(endpoint.url, method, path, body, dict(headers), timeout)
        self.sent.append(s)
        script = self.scripts.get(endpoint.port, [])
        step: Step = script.pop(0) if script else REFUSED
        if isinstance(step, AttemptTimedOut):
            self.clock.now += timeout
        if isinstance(step, TransportError):
            raise step
        return step(s) if callable(step) else step

    def close(self) -> None:
        self.closed = True


class FakeAsyncTransport:
    def __init__(self, sync: FakeTransport) -> None:
        self.sync = sync

    async def request(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: float,
    ) -> HttpAnswer:
        return self.sync.request(endpoint, method, path, body, headers, timeout)

    async def close(self) -> None:
        self.sync.close()
