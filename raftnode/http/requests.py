"""Parsing and validating client requests into commands and read parameters.

Everything here is pure: a bad request raises ``ApiError`` (400 or 413) before anything is
proposed, so bad input changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

from raftnode.config import Limits
from raftnode.consistency import Consistency
from raftnode.http.errors import ErrorCode, bad_request, too_large
from raftnode.kv.commands import Command

DEFAULT_LIST_LIMIT = 1000
MAX_LIST_LIMIT = 10000
_ABSENT = object()


def parse_body(body: bytes, limits: Limits) -> dict[str, Any]:
    """The request body as a JSON object."""
    if len(body) > limits.max_request_bytes:
        raise too_large(
            f"request body is {len(body)} bytes; the limit is {limits.max_request_bytes} bytes"
        )
    if not body.strip():
        raise bad_request("request body is empty; send a JSON object", ErrorCode.BAD_JSON)
    return decode_json_object(body)


def decode_json_object(body: bytes) -> dict[str, Any]:
    """``body`` as a JSON object, or 400 ``bad_json`` naming what is wrong (never a 500).

    Nesting deep enough to exhaust the parser's recursion is refused like any other malformed
    body; the handlers then refuse every field that is not of its documented type.
    """
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad_request(f"request body is not valid JSON: {e}", ErrorCode.BAD_JSON) from e
    except RecursionError:
        raise bad_request(
            "request body is nested too deeply; send a flat JSON object", ErrorCode.BAD_JSON
        ) from None
    if not isinstance(obj, dict):
        raise bad_request("request body must be a JSON object", ErrorCode.BAD_JSON)
    return obj


def _text_problem(text: str, *, controls: bool) -> str | None:
    """What makes ``text`` unacceptable: a lone surrogate (invalid UTF-8 in a URL, or a
    ``\\ud800`` escape in JSON) or, with ``controls``, a control character."""
    for i, ch in enumerate(text):
        code = ord(ch)
        if 0xD800 <= code <= 0xDFFF:
            return f"is not valid Unicode text (invalid UTF-8 or a lone surrogate at {i})"
        if controls and (code < 0x20 or 0x7F <= code <= 0x9F):
            return f"contains the control character U+{code:04X} at position {i}"
    return None


def check_key(key: Any, limits: Limits, *, where: str = "key") -> str:
    if key is _ABSENT or key is None:
        raise bad_request(f"{where} is required", ErrorCode.BAD_KEY)
    if not isinstance(key, str):
        raise bad_request(f"{where} must be a string, got {type(key).__name__}", ErrorCode.BAD_KEY)
    if not key:
        raise bad_request(f"{where} must not be empty", ErrorCode.BAD_KEY)
    problem = _text_problem(key, controls=True)
    if problem is not None:
        raise bad_request(
            f"{where} {problem}; a key is Unicode text without control characters",
            ErrorCode.BAD_KEY,
        )
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > limits.max_key_bytes:
        raise too_large(f"{where} is {size} bytes; the limit is {limits.max_key_bytes} bytes")
    return key


def check_value(value: Any, limits: Limits, *, where: str = "value") -> str:
    if value is _ABSENT:
        raise bad_request(f"{where} is required", ErrorCode.BAD_VALUE)
    if not isinstance(value, str):
        raise bad_request(
            f"{where} must be a string, got {'null' if value is None else type(value).__name__}",
            ErrorCode.BAD_VALUE,
        )
    problem = _text_problem(value, controls=False)
    if problem is not None:
        raise bad_request(f"{where} {problem}", ErrorCode.BAD_VALUE)
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > limits.max_value_bytes:
        raise too_large(f"{where} is {size} bytes; the limit is {limits.max_value_bytes} bytes")
    return value


def _check_fields(obj: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise bad_request(
            f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}",
            ErrorCode.BAD_FIELD,
        )


def _cas(obj: dict[str, Any], limits: Limits) -> tuple[bool, str | None]:
    if "prev_value" not in obj:
        return False, None
    prev = obj["prev_value"]
    if prev is None:
        return True, None
    return True, check_value(prev, limits, where="prev_value")


def put_from_post(body: bytes, limits: Limits) -> Command:
    """``POST /kv {"key", "value"[, "prev_value"]}``."""
    obj = parse_body(body, limits)
    _check_fields(obj, {"key", "value", "prev_value"})
    key = check_key(obj.get("key", _ABSENT), limits)
    value = check_value(obj.get("value", _ABSENT), limits)
    cas, prev = _cas(obj, limits)
    return Command("put", key, value, cas, prev)


def put_from_put(path_key: str, body: bytes, limits: Limits) -> Command:
    """``PUT /kv/{key} {"value"[, "prev_value"]}`` (a ``key`` field must match the path)."""
    key = check_key(path_key, limits)
    obj = parse_body(body, limits)
    _check_fields(obj, {"key", "value", "prev_value"})
    if "key" in obj and obj["key"] != key:
        raise bad_request("body key differs from the key in the URL", ErrorCode.BAD_KEY)
    value = check_value(obj.get("value", _ABSENT), limits)
    cas, prev = _cas(obj, limits)
    return Command("put", key, value, cas, prev)


def delete_command(path_key: str, body: bytes, prev_arg: str | None, limits: Limits) -> Command:
    """``DELETE /kv/{key}``, optionally with ``{"prev_value": ...}`` or ``?prev_value=``."""
    key = check_key(path_key, limits)
    cas, prev = False, None
    if body.strip():
        obj = parse_body(body, limits)
        _check_fields(obj, {"prev_value"})
        cas, prev = _cas(obj, limits)
    if prev_arg is not None:
        cas, prev = True, check_value(prev_arg, limits, where="prev_value")
    return Command("delete", key, None, cas, prev)


def consistency(arg: str | None) -> Consistency:
    if arg is None or arg == "":
        return Consistency.LINEARIZABLE
    try:
        return Consistency(arg)
    except ValueError:
        raise bad_request(
            f"consistency must be one of {', '.join(Consistency)}, got {arg!r}",
            ErrorCode.BAD_PARAM,
        ) from None


def list_limit(arg: str | None) -> int:
    if arg is None or arg == "":
        return DEFAULT_LIST_LIMIT
    if not arg.isdigit() or not 1 <= int(arg) <= MAX_LIST_LIMIT:
        raise bad_request(
            f"limit must be an integer from 1 to {MAX_LIST_LIMIT}, got {arg!r}", ErrorCode.BAD_PARAM
        )
    return int(arg)


def check_params(given: list[str], allowed: set[str]) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise bad_request(
            f"unknown query parameter(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(allowed)) or 'none'}",
            ErrorCode.BAD_PARAM,
        )


MAX_IDEMPOTENCY_KEY = 128


def idempotency_key(header: str | None) -> str | None:
    """The ``Idempotency-Key`` header: 1-128 printable ASCII characters, or absent."""
    if header is None:
        return None
    if not 0 < len(header) <= MAX_IDEMPOTENCY_KEY or not all(" " < c < "\x7f" for c in header):
        raise bad_request(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters "
            "without spaces",
            ErrorCode.BAD_PARAM,
        )
    return header
