"""The client API's error answers: an HTTP status, a machine code and a sentence to act on.

Handlers raise ``ApiError``; ``ClientApi.handle`` in ``client_api`` renders every one of them,
in one place, as ``{"error": code, "message": ...}``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """The ``error`` field of an error answer (see ``docs/openapi.yaml``)."""

    BAD_REQUEST = "bad_request"
    BAD_JSON = "bad_json"
    BAD_KEY = "bad_key"
    BAD_VALUE = "bad_value"
    BAD_FIELD = "bad_field"
    BAD_PARAM = "bad_param"
    TOO_LARGE = "too_large"
    NOT_FOUND = "not_found"
    NO_ROUTE = "no_route"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CAS_MISMATCH = "cas_mismatch"
    UNAVAILABLE = "unavailable"
    OUTCOME_UNKNOWN = "outcome_unknown"
    INTERNAL = "internal"
    QUOTA_EXCEEDED = "quota_exceeded"
    CONFLICT = "conflict"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    DISK_FULL = "disk_full"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    UPGRADE_IN_PROGRESS = "upgrade_in_progress"
    # Refused by the connection layer (raftnode.http.connection), before any handler runs.
    HEADERS_TOO_LARGE = "headers_too_large"
    REQUEST_TIMEOUT = "request_timeout"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    NOT_IMPLEMENTED = "not_implemented"
    COMPACTED = "compacted"
    LEASE_NOT_FOUND = "lease_not_found"
    LEASE_EXISTS = "lease_exists"
    TOO_MANY_LEASES = "too_many_leases"


class ApiError(Exception):
    """Raised by handlers and validation; rendered as ``{"error": code, "message": ...}``."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        *,
        retry_after: int | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.extra = extra or {}
        self.headers = headers or {}
        """Response headers the answer needs (``Allow`` on a 405)."""

    def __str__(self) -> str:
        return self.message

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


def bad_request(message: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> ApiError:
    return ApiError(400, code, message)


def method_not_allowed(method: str, path: str, allowed: str) -> ApiError:
    """405 for a method the path does not serve; ``Allow`` lists those it does (RFC 9110)."""
    return ApiError(
        405,
        ErrorCode.METHOD_NOT_ALLOWED,
        f"{method} is not allowed on {path}; allowed: {allowed}",
        headers={"Allow": allowed},
    )


def too_large(message: str) -> ApiError:
    return ApiError(413, ErrorCode.TOO_LARGE, message)


def unavailable(message: str, retry_after: int = 1) -> ApiError:
    return ApiError(503, ErrorCode.UNAVAILABLE, message, retry_after=retry_after)


def upgrade_in_progress(message: str, retry_after: int = 5) -> ApiError:
    """503 for a request some member's release cannot apply yet: nothing was proposed."""
    return ApiError(503, ErrorCode.UPGRADE_IN_PROGRESS, message, retry_after=retry_after)


def outcome_unknown(message: str) -> ApiError:
    return ApiError(504, ErrorCode.OUTCOME_UNKNOWN, message)


def not_found(key: str) -> ApiError:
    return ApiError(404, ErrorCode.NOT_FOUND, f"key {key!r} does not exist", extra={"key": key})


def quota_exceeded(key: str | None, quota: int | None) -> ApiError:
    return ApiError(
        507,
        ErrorCode.QUOTA_EXCEEDED,
        f"the store is at its quota of {quota} bytes (limits.max_store_bytes); nothing was "
        "written: delete keys or raise the quota on every node",
        extra={"key": key} if key is not None else {},
    )


def idempotency_key_reused(key: str | None) -> ApiError:
    return ApiError(
        422,
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
        "this Idempotency-Key was already used for a different request; nothing was written. "
        "Use a new key for each logical write, and the same key only to retry the same request",
        extra={"key": key} if key is not None else {},
    )


def disk_full(free: int, minimum: int) -> ApiError:
    return ApiError(
        507,
        ErrorCode.DISK_FULL,
        f"the data directory's filesystem has {free} bytes free, under the "
        f"{minimum} bytes kept in reserve (limits.min_free_disk_bytes); nothing was written: "
        "free disk space or delete keys",
    )
