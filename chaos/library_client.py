"""Register and set operations through ``raftnode.client.AsyncClient`` (issue 20: the workload
"through the client library"), ended in the same outcomes as the raw HTTP path.

The library retries on its own (connection errors, timeouts, 502/503/504, on the next
endpoint) and gives every write an idempotency key of its own (a uuid4, the same on every
attempt), so a retried write applies at most once and a retry learns the first attempt's
outcome. Its transport is wrapped to note each attempt (the endpoint, the answer or the loss)
so the history says where the call ended and so an error can be judged by every attempt.

Writes:

- the call returns: ok;
- ``Unavailable`` (``DeadlineExceeded`` too): info when the library says ``maybe_applied``, or
  when an attempt ended in an answer the raw path calls info (HAProxy's non-JSON 503, which
  the library trusts as "nothing done"); otherwise fail;
- a 4xx refusal (``CompareFailed`` 409, ``NotFound`` 404 on a delete, ``IdempotencyKeyReused``
  422, ``BadRequest`` 400/413): fail, as raw HTTP's 4xx. Also after an earlier attempt that
  may have reached a node: 409, 404 and 422 are decided when the command applies, where a
  retry with the same key finds the first attempt's remembered outcome; 400 and 413 are the
  same answer for the same bytes on every node;
- 507 ``disk_full`` (refused before proposing): fail, unless an earlier attempt may have
  reached a node (then info: the library keeps no ``maybe_applied`` on a refusal);
- any other refusal (500, 507 ``quota_exceeded``) and any other exception: info.

Reads: the value, or ``NotFound`` (result None): ok; ``Unavailable`` info when an attempt was
sent and no answer came (as raw HTTP), else fail; a refusal fail; anything else info.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from raftnode.client import AsyncClient, NotFound, ServerRefusal, Unavailable
from raftnode.client.async_transport import AsyncHttpTransport, AsyncTransport
from raftnode.client.endpoints import Endpoint
from raftnode.client.retry import HttpAnswer, TransportError

from .classify import classify_read, classify_write
from .history import Outcome
from .http_client import Answer

LIBRARY_ENDPOINT = "client-library"
"""The endpoint recorded when the library made no attempt (it refused the call itself)."""


@dataclass
class Attempt:
    endpoint: str
    answer: Answer


class AttemptLog:
    """The library's transport, noting every attempt of the call under way (one client makes
    one call at a time). Answers are recorded as the raw path's ``Answer``."""

    def __init__(self, inner: AsyncTransport) -> None:
        self.inner = inner
        self.attempts: list[Attempt] = []

    def start(self) -> None:
        self.attempts = []

    async def request(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: float,
    ) -> HttpAnswer:
        try:
            answer = await self.inner.request(endpoint, method, path, body, headers, timeout)
        except TransportError as e:
            lost = Answer(0, sent=e.sent, error=f"{'lost' if e.sent else 'connect'}: {e}")
            self.attempts.append(Attempt(endpoint.url, lost))
            raise
        raw = Answer(answer.status, sent=True, headers=answer.headers, body=answer.body)
        self.attempts.append(Attempt(endpoint.url, raw))
        return answer

    async def close(self) -> None:
        await self.inner.close()

    @property
    def endpoint(self) -> str:
        return self.attempts[-1].endpoint if self.attempts else LIBRARY_ENDPOINT

    def summary(self) -> str:
        return ",".join(
            str(a.answer.status) if a.answer.status else a.answer.error.split(":")[0]
            for a in self.attempts
        )


def classify_library_write(error: BaseException | None, attempts: Sequence[Answer]) -> Outcome:
    """A library write's outcome from its exception (None: it returned) and its attempts."""
    if error is None:
        return "ok"
    unknown = any(classify_write(a) == "info" for a in attempts)
    if isinstance(error, Unavailable):
        return "info" if error.maybe_applied or unknown else "fail"
    if isinstance(error, ServerRefusal):
        if 400 <= error.status < 500:
            return "fail"
        if error.status == 507 and error.code == "disk_full":
            return "info" if unknown else "fail"
    return "info"


def classify_library_read(error: BaseException | None, attempts: Sequence[Answer]) -> Outcome:
    """A library read's outcome (``NotFound`` is an answer: the key is absent)."""
    if error is None or isinstance(error, NotFound):
        return "ok"
    if isinstance(error, Unavailable):
        return "info" if any(classify_read(a) == "info" for a in attempts) else "fail"
    if isinstance(error, ServerRefusal):
        return "fail"
    return "info"


def _error_note(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


@dataclass(frozen=True)
class Done:
    """One library call as the history records it."""

    outcome: Outcome
    endpoint: str
    note: str
    result: str | None = None


class LibraryClient:
    """One workload client's ``AsyncClient``: ``timeout`` bounds each attempt and each read,
    ``attempts`` times it a whole write (like the raw path's keyed retries). ``transport``
    (the library's own by default) is for tests."""

    def __init__(
        self,
        endpoints: Sequence[str],
        timeout: float,
        attempts: int,
        transport: AsyncTransport | None = None,
    ) -> None:
        self.log = AttemptLog(transport or AsyncHttpTransport())
        self.client = AsyncClient(
            list(endpoints),
            timeout=timeout * attempts,
            attempt_timeout=timeout,
            transport=self.log,
        )
        self.timeout = timeout

    async def close(self) -> None:
        await self.client.close()

    def _done(self, outcome: Outcome, details: list[str], result: str | None = None) -> Done:
        tried = self.log.summary()
        note = " ".join(["client", *([f"attempts={tried}"] if tried else []), *details])
        return Done(outcome, self.log.endpoint, note, result)

    async def get(self, key: str, consistency: str) -> Done:
        self.log.start()
        try:
            kv = await self.client.get(key, consistency=consistency, timeout=self.timeout)
        except Exception as e:  # every ending is recorded; CancelledError passes
            outcome = classify_library_read(e, [a.answer for a in self.log.attempts])
            return self._done(outcome, [] if isinstance(e, NotFound) else [_error_note(e)])
        revision = [] if kv.mod_revision is None else [f"rev={kv.mod_revision}"]
        return self._done("ok", revision, kv.value)

    async def write(self, kind: str, key: str, value: str | None, expected: str | None) -> Done:
        """``put``, ``cas`` (``expected`` None: the key must be absent), ``delete`` or ``add``
        (a set element's key, created only if absent)."""
        if kind not in {"put", "cas", "delete", "add"} or (kind in {"put", "cas"}) != (
            value is not None
        ):
            raise ValueError(f"unknown write {kind!r} with value {value!r}")
        self.log.start()
        try:
            if kind == "put":
                result = await self.client.put(key, str(value))
            elif kind == "cas":
                result = await self.client.put(key, str(value), prev_value=expected)
            elif kind == "delete":
                result = await self.client.delete(key)
            else:
                result = await self.client.put(key, "1", prev_value=None)
        except Exception as e:  # every ending is recorded; CancelledError passes
            outcome = classify_library_write(e, [a.answer for a in self.log.attempts])
            return self._done(outcome, [_error_note(e), "idem"])
        details = [f"rev={result.revision}"] + (["replayed"] if result.replayed else [])
        return self._done("ok", [*details, "idem"])
