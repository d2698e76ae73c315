"""What a client call can end in, as exception types an application can catch one by one.

Every exception is a ``ClientError``. A call that could not reach a node able to take it before
its deadline raises ``Unavailable`` (``DeadlineExceeded`` when the deadline ran out while an
attempt was in flight or after an answer that left a write's outcome open). The server's own
refusals keep its error code and message: ``NotFound``, ``CompareFailed``, ``BadRequest``
(``IdempotencyKeyReused`` among them), ``QuotaExceeded`` and ``ServerError``.
"""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base of every error ``raftnode.client`` raises."""


class Unavailable(ClientError):
    """No node took the call before its deadline.

    ``maybe_applied`` is True for a write when at least one attempt may have reached the leader
    (a timeout, a connection lost after sending, a 504): call again with the same
    ``idempotency_key`` to learn its outcome; it is never applied twice. False means nothing
    was done. ``attempts`` lists what each attempt ended in (endpoint and reason)."""

    def __init__(
        self,
        message: str,
        *,
        attempts: list[str] | None = None,
        maybe_applied: bool = False,
        idempotency_key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = attempts or []
        self.maybe_applied = maybe_applied
        self.idempotency_key = idempotency_key

    def __str__(self) -> str:
        text = self.message
        if self.attempts:
            text += f" (last: {self.attempts[-1]}; {len(self.attempts)} attempts)"
        if self.maybe_applied and self.idempotency_key:
            text += (
                f"; the write may have been applied: send it again with idempotency key "
                f"{self.idempotency_key} to learn its outcome"
            )
        return text


class DeadlineExceeded(Unavailable):
    """The call's deadline passed before a definite answer came."""


class ServerRefusal(ClientError):
    """A definite answer from a node that refused the call: its HTTP status, its error code
    (``bad_key``, ``too_large``, ...) and its message, unchanged. Nothing was written."""

    def __init__(self, status: int, code: str, message: str, body: dict[str, Any]) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.status = status
        self.code = code
        self.message = message
        self.body = body


class NotFound(ServerRefusal):
    """The key does not exist (404 ``not_found``)."""

    @property
    def key(self) -> str | None:
        key = self.body.get("key")
        return key if isinstance(key, str) else None


class CompareFailed(ServerRefusal):
    """A compare-and-set found another value (409 ``cas_mismatch``); nothing was written.
    ``current_value`` is the value the key holds (None when ``exists`` is False)."""

    @property
    def current_value(self) -> str | None:
        value = self.body.get("current_value")
        return value if isinstance(value, str) else None

    @property
    def exists(self) -> bool:
        return bool(self.body.get("exists"))

    @property
    def mod_revision(self) -> int | None:
        """The key's current ``mod_revision`` (None when it does not exist): what a
        compare on ``prev_revision`` found."""
        value = self.body.get("mod_revision")
        return value if type(value) is int else None


class LeaseNotFound(ServerRefusal):
    """The lease does not exist (404 ``lease_not_found``): never granted, revoked, or
    expired. A put naming it wrote nothing."""

    @property
    def lease(self) -> int | None:
        value = self.body.get("id")
        return value if type(value) is int else None


class LeaseExists(ServerRefusal):
    """A lease with the requested id exists (409 ``lease_exists``); nothing changed."""


class BadRequest(ServerRefusal):
    """The node refused the request as malformed or too large (4xx): fix the request."""


class IdempotencyKeyReused(BadRequest):
    """The idempotency key was used before for a different write (422); nothing was written."""


class QuotaExceeded(ServerRefusal):
    """The store is at its quota or the node's disk is nearly full (507); deletes still work."""


class ServerError(ServerRefusal):
    """Any other answer the client does not retry (a 500, an unexpected status)."""


def refusal_from_answer(status: int, body: dict[str, Any]) -> ServerRefusal:
    """The exception for a definite error answer (never a retryable one)."""
    code = str(body.get("error") or f"http_{status}")
    message = str(body.get("message") or "")
    if status == 404 and code == "not_found":
        return NotFound(status, code, message, body)
    if status == 404 and code == "lease_not_found":
        return LeaseNotFound(status, code, message, body)
    if status == 409 and code == "lease_exists":
        return LeaseExists(status, code, message, body)
    if status == 409 and code == "cas_mismatch":
        return CompareFailed(status, code, message, body)
    if status == 422 and code == "idempotency_key_reused":
        return IdempotencyKeyReused(status, code, message, body)
    if status == 507:
        return QuotaExceeded(status, code, message, body)
    if 400 <= status < 500:
        return BadRequest(status, code, message, body)
    return ServerError(status, code, message, body)
