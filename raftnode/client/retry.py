"""When to try again, where, and after how long: the part the sync and asyncio clients share.

``CallAttempts`` holds one call's state (its deadline, the endpoint to try next, the backoff
round) and turns each attempt's ending into a decision: the answer is final (return it or raise
the node's refusal), or try again after a delay on the next endpoint. It reads no clock and
sleeps never: the caller passes ``now`` and does the sleeping, so unit tests drive it with a fake
clock and a fake transport.

Rules (see docs/client.md):
- Retried: connection errors, timeouts, 503 (nothing was done; ``Retry-After`` is honoured),
  504 (a write's outcome unknown: retried with the same idempotency key, so it applies once),
  502 (a balancer lost the node), 408 and 429, 421 and redirects (another node should answer).
- Final: every other answer, 2xx and the node's refusals (404, 409, 400, 413, 422, 507, 500).
- After each failure the next endpoint is tried at once; when every endpoint has failed in a
  round, the client sleeps a jittered exponential backoff (``initial * multiplier**round``,
  capped at ``backoff_max``, drawn from its upper half), or ``Retry-After`` when longer (still
  capped at ``backoff_max``), and never past the call's deadline.
"""

from __future__ import annotations

import json
import random
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from raftnode.client.endpoints import Endpoint, parse_endpoint
from raftnode.client.errors import DeadlineExceeded, ServerRefusal, Unavailable, refusal_from_answer

RETRY_STATUSES = frozenset({408, 421, 429, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAYBE_APPLIED_STATUSES = frozenset({502, 504})
"""Answers after which a write may have been applied (a balancer lost the node mid-request, or
the node could not learn the outcome in time)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds of one call. ``timeout`` is the whole call's deadline (every attempt and every
    backoff sleep); ``attempt_timeout`` bounds one attempt (a node that stopped answering, e.g.
    a paused leader, is left after it). Backoff: see the module docstring."""

    timeout: float = 15.0
    attempt_timeout: float = 6.0
    backoff_initial: float = 0.05
    backoff_max: float = 1.0
    backoff_multiplier: float = 2.0

    def __post_init__(self) -> None:
        for name in ("timeout", "attempt_timeout", "backoff_initial", "backoff_max"):
            if not getattr(self, name) > 0:
                raise ValueError(f"RetryPolicy.{name} must be positive, not {getattr(self, name)}")
        if self.backoff_multiplier < 1:
            raise ValueError("RetryPolicy.backoff_multiplier must be at least 1")

    def backoff(self, round_number: int, rng: random.Random) -> float:
        """The sleep after ``round_number`` (0-based) full rounds of failures: jittered in
        the upper half of the exponential delay, so clients that failed together spread out."""
        base = min(
            self.backoff_max,
            self.backoff_initial * self.backoff_multiplier ** min(round_number, 64),
        )
        return rng.uniform(base / 2, base)


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """One HTTP answer as a transport returns it; header names in lower case."""

    status: int
    headers: dict[str, str]
    body: bytes


class TransportError(Exception):
    """An attempt that got no answer. ``sent`` is False only when the request surely never
    reached the node (the connection was refused or never established)."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class AttemptTimedOut(TransportError):
    """No answer within the attempt's timeout (the request may have reached the node)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, sent=True)


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the delta-seconds form; an HTTP date is ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


@dataclass(slots=True)
class CallAttempts:
    """One call's attempts. Construct, then loop: ``endpoint``, ``attempt_timeout(now)``, send,
    and ``answered`` or ``failed``; sleep the delay either returns."""

    endpoints: Sequence[Endpoint]
    policy: RetryPolicy
    started: float
    start_index: int = 0
    idempotency_key: str | None = None
    """Set for writes: carried into the error when the deadline passes."""
    rng: random.Random = field(default_factory=random.Random)
    index: int = field(init=False)
    deadline: float = field(init=False)
    history: list[str] = field(init=False, default_factory=list)
    maybe_applied: bool = field(init=False, default=False)
    _round_failures: int = field(init=False, default=0)
    _round: int = field(init=False, default=0)
    _round_retry_after: float = field(init=False, default=0.0)
    _last_definite: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ValueError("no endpoints to try")
        self.index = self.start_index % len(self.endpoints)
        self.deadline = self.started + self.policy.timeout

    @property
    def endpoint(self) -> Endpoint:
        return self.endpoints[self.index]

    def attempt_timeout(self, now: float) -> float:
        """This attempt's timeout; raises when the call's deadline has passed."""
        remaining = self.deadline - now
        if remaining <= 0:
            raise self._give_up()
        return min(self.policy.attempt_timeout, remaining)

    def answered(self, answer: HttpAnswer, now: float) -> HttpAnswer | float:
        """The answer when it is final (2xx), a delay before the next attempt when it is
        retryable; raises the node's refusal (``ServerRefusal``) for any other answer."""
        status = answer.status
        if 200 <= status < 300:
            return answer
        if status in RETRY_STATUSES or status in REDIRECT_STATUSES:
            reason = f"{self.endpoint}: HTTP {status}"
            code = _error_code(answer)
            if code:
                reason += f" {code}"
            redirect = self._redirect_target(answer) if status in REDIRECT_STATUSES else None
            return self._failed(
                now,
                reason,
                maybe_applied=status in MAYBE_APPLIED_STATUSES,
                definite=status in (503, 421) or status in REDIRECT_STATUSES,
                retry_after=retry_after_seconds(answer.headers.get("retry-after")),
                redirect=redirect,
            )
        raise self.refusal(answer)

    def failed(self, error: TransportError, now: float) -> float:
        """The delay before the next attempt after an attempt that got no answer."""
        return self._failed(
            now, f"{self.endpoint}: {error}", maybe_applied=error.sent, definite=not error.sent
        )

    @staticmethod
    def refusal(answer: HttpAnswer) -> ServerRefusal:
        return refusal_from_answer(answer.status, _json_object(answer.body))

    # -- internals ---------------------------------------------------------------------------

    def _failed(
        self,
        now: float,
        reason: str,
        *,
        maybe_applied: bool,
        definite: bool,
        retry_after: float | None = None,
        redirect: int | None = None,
    ) -> float:
        self.history.append(reason)
        self.maybe_applied = self.maybe_applied or maybe_applied
        self._last_definite = definite
        if retry_after is not None:
            self._round_retry_after = max(self._round_retry_after, retry_after)
        self._round_failures += 1
        self.index = redirect if redirect is not None else (self.index + 1) % len(self.endpoints)
        remaining = self.deadline - now
        if remaining <= 0:
            raise self._give_up()
        if self._round_failures < len(self.endpoints):
            return 0.0
        delay = self.policy.backoff(self._round, self.rng)
        delay = max(delay, min(self._round_retry_after, self.policy.backoff_max))
        self._round += 1
        self._round_failures = 0
        self._round_retry_after = 0.0
        return min(delay, remaining)

    def _redirect_target(self, answer: HttpAnswer) -> int | None:
        """The configured endpoint a redirect names, if any: the client never follows one to
        a host it was not given (it would carry the token there)."""
        location = answer.headers.get("location")
        if not location:
            return None
        parts = urllib.parse.urlsplit(location)
        if not parts.scheme or not parts.netloc:
            return None  # a relative redirect: the same node, which just refused
        try:
            target = parse_endpoint(f"{parts.scheme}://{parts.netloc}")
        except ValueError:
            return None
        for i, endpoint in enumerate(self.endpoints):
            if endpoint == target:
                return i
        return None

    def _give_up(self) -> Unavailable:
        kind = Unavailable if self._last_definite else DeadlineExceeded
        what = "no node could take the call" if self._last_definite else "no definite answer came"
        return kind(
            f"{what} within the call's {self.policy.timeout:g} s deadline",
            attempts=list(self.history),
            maybe_applied=self.maybe_applied and self.idempotency_key is not None,
            idempotency_key=self.idempotency_key,
        )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(body) if body else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _error_code(answer: HttpAnswer) -> str:
    code = _json_object(answer.body).get("error")
    return code if isinstance(code, str) else ""
