"""Parsing and validating client requests into commands and read parameters.

Everything here is pure: a bad request raises ``ApiError`` (400 or 413) before anything is
proposed, so bad input changes nothing.
"""

from __future__ import annotations

import json
import re
from typing import Any

from raftnode.config import Limits
from raftnode.consistency import Consistency
from raftnode.http.errors import ErrorCode, bad_request, too_large
from raftnode.json_text import parse_json
from raftnode.kv.commands import (
    COMPARE_OPS,
    COMPARE_TARGETS,
    MAX_LEASE_ID,
    TXN_OPS,
    Command,
    Compare,
    Txn,
    TxnOp,
)
from raftnode.kv.store import KeyRange

DEFAULT_LIST_LIMIT = 1000
MAX_LIST_LIMIT = 10000
MAX_REVISION = (1 << 63) - 1
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
        obj = parse_json(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad_request(f"request body is not valid JSON: {e}", ErrorCode.BAD_JSON) from e
    except RecursionError:
        raise bad_request(
            "request body is nested too deeply; send a flat JSON object", ErrorCode.BAD_JSON
        ) from None
    if not isinstance(obj, dict):
        raise bad_request("request body must be a JSON object", ErrorCode.BAD_JSON)
    return obj


_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _text_problem(text: str, *, controls: bool) -> str | None:
    """What makes ``text`` unacceptable: a lone surrogate (invalid UTF-8 in a URL, or a
    ``\\ud800`` escape in JSON) or, with ``controls``, a control character; the first one
    in the text is named.

    Every key and value of every write passes here, so the common case (ASCII, and for keys
    printable ASCII: no surrogate or control character can be in it) is answered without
    looking at each character in Python, which cost more than the rest of parsing a write."""
    if text.isascii() and (not controls or text.isprintable()):
        return None
    surrogate = _SURROGATE.search(text)
    control = _CONTROL.search(text) if controls else None
    if surrogate is not None and (control is None or surrogate.start() < control.start()):
        i = surrogate.start()
        return f"is not valid Unicode text (invalid UTF-8 or a lone surrogate at {i})"
    if control is not None:
        i, code = control.start(), ord(control.group())
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


def check_revision(value: Any, where: str, code: ErrorCode = ErrorCode.BAD_VALUE) -> int:
    """A revision in a request: an integer from 0 to 2^63-1 (0: the key is absent)."""
    if type(value) is not int or not 0 <= value <= MAX_REVISION:
        raise bad_request(
            f"{where} must be an integer from 0 to {MAX_REVISION} (0: the key must be absent), "
            f"got {json.dumps(value)}",
            code,
        )
    return value


def _prev_revision(obj: dict[str, Any]) -> int | None:
    if "prev_revision" not in obj:
        return None
    return check_revision(obj["prev_revision"], "prev_revision")


def _cas(obj: dict[str, Any], limits: Limits) -> tuple[bool, str | None]:
    if "prev_value" not in obj:
        return False, None
    prev = obj["prev_value"]
    if prev is None:
        return True, None
    return True, check_value(prev, limits, where="prev_value")


_PUT_FIELDS = {"key", "value", "prev_value", "prev_revision", "lease"}


def lease_id(value: Any, where: str = "id") -> int:
    """A lease id from a request: an integer from 1 to 2^63-1."""
    if type(value) is not int or not 0 < value <= MAX_LEASE_ID:
        raise bad_request(
            f"{where} must be a lease id, an integer from 1 to {MAX_LEASE_ID}, "
            f"got {json.dumps(value)}",
            ErrorCode.BAD_VALUE,
        )
    return value


def _lease(obj: dict[str, Any]) -> int | None:
    """The ``lease`` a put attaches its key to (absent or null: none, detaching it)."""
    value = obj.get("lease")
    return None if value is None else lease_id(value, "lease")


def put_from_post(body: bytes, limits: Limits) -> Command:
    """``POST /kv {"key", "value"[, "prev_value"][, "prev_revision"][, "lease"]}``."""
    obj = parse_body(body, limits)
    _check_fields(obj, _PUT_FIELDS)
    key = check_key(obj.get("key", _ABSENT), limits)
    value = check_value(obj.get("value", _ABSENT), limits)
    cas, prev = _cas(obj, limits)
    return Command(
        "put", key, value, cas, prev, prev_revision=_prev_revision(obj), lease=_lease(obj)
    )


def put_from_put(path_key: str, body: bytes, limits: Limits) -> Command:
    """``PUT /kv/{key} {"value"[, "prev_value"][, "prev_revision"][, "lease"]}`` (a ``key``
    field must match the path)."""
    key = check_key(path_key, limits)
    obj = parse_body(body, limits)
    _check_fields(obj, _PUT_FIELDS)
    if "key" in obj and obj["key"] != key:
        raise bad_request("body key differs from the key in the URL", ErrorCode.BAD_KEY)
    value = check_value(obj.get("value", _ABSENT), limits)
    cas, prev = _cas(obj, limits)
    return Command(
        "put", key, value, cas, prev, prev_revision=_prev_revision(obj), lease=_lease(obj)
    )


def delete_command(
    path_key: str,
    body: bytes,
    prev_arg: str | None,
    limits: Limits,
    prev_revision_arg: str | None = None,
) -> Command:
    """``DELETE /kv/{key}``, optionally with ``{"prev_value", "prev_revision"}`` or
    ``?prev_value=`` / ``?prev_revision=``."""
    key = check_key(path_key, limits)
    cas, prev = False, None
    prev_revision = None
    if body.strip():
        obj = parse_body(body, limits)
        _check_fields(obj, {"prev_value", "prev_revision"})
        cas, prev = _cas(obj, limits)
        prev_revision = _prev_revision(obj)
    if prev_arg is not None:
        cas, prev = True, check_value(prev_arg, limits, where="prev_value")
    if prev_revision_arg is not None:
        prev_revision = revision_param(prev_revision_arg, "prev_revision")
    return Command("delete", key, None, cas, prev, prev_revision=prev_revision)


def revision_param(arg: str, name: str) -> int:
    if not arg.isascii() or not arg.isdigit():
        raise bad_request(
            f"{name} must be an integer from 0 to {MAX_REVISION}, got {arg!r}", ErrorCode.BAD_PARAM
        )
    return check_revision(int(arg), name, ErrorCode.BAD_PARAM)


# -- transactions ------------------------------------------------------------------------------


def _text_bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _object(item: Any, where: str, required: set[str], allowed: set[str]) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise bad_request(f"{where} must be a JSON object", ErrorCode.BAD_FIELD)
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise bad_request(
            f"{where} has unknown field(s) {', '.join(unknown)}; allowed: "
            f"{', '.join(sorted(allowed))}",
            ErrorCode.BAD_FIELD,
        )
    missing = sorted(required - set(item))
    if missing:
        raise bad_request(f"{where} needs {', '.join(missing)}", ErrorCode.BAD_FIELD)
    return item


def _compare(item: Any, where: str, limits: Limits) -> tuple[Compare, int]:
    fields = {"key", "target", "op", "value"}
    obj = _object(item, where, fields, fields)
    key = check_key(obj["key"], limits, where=f"{where}.key")
    target, op, value = obj["target"], obj["op"], obj["value"]
    if target not in COMPARE_TARGETS:
        raise bad_request(
            f"{where}.target must be one of {', '.join(COMPARE_TARGETS)}, got {json.dumps(target)}",
            ErrorCode.BAD_FIELD,
        )
    if op not in COMPARE_OPS:
        raise bad_request(
            f"{where}.op must be one of {', '.join(COMPARE_OPS)}, got {json.dumps(op)}",
            ErrorCode.BAD_FIELD,
        )
    size = _text_bytes(key)
    if target == "value":
        value = check_value(value, limits, where=f"{where}.value")
        size += _text_bytes(value)
    elif target == "exists":
        if not isinstance(value, bool):
            raise bad_request(f"{where}.value must be true or false for target exists")
        if op not in ("equal", "not_equal"):
            raise bad_request(f"{where}.op must be equal or not_equal for target exists")
    else:
        value = check_revision(value, f"{where}.value")
    return Compare(key, target, op, value), size


def _txn_ops(obj: dict[str, Any], branch: str, limits: Limits) -> tuple[tuple[TxnOp, ...], int]:
    items = obj.get(branch, [])
    if not isinstance(items, list):
        raise bad_request(f"{branch} must be a list of operations", ErrorCode.BAD_FIELD)
    ops: list[TxnOp] = []
    size = 0
    written: set[str] = set()
    for i, item in enumerate(items):
        where = f"{branch}[{i}]"
        kind = item.get("op") if isinstance(item, dict) else None
        if kind not in TXN_OPS:
            raise bad_request(
                f"{where}.op must be one of {', '.join(TXN_OPS)}, got "
                f"{json.dumps(kind) if isinstance(item, dict) else 'no object'}",
                ErrorCode.BAD_FIELD,
            )
        fields = {"op", "key", "value"} if kind == "put" else {"op", "key"}
        _object(item, where, fields, fields)
        key = check_key(item["key"], limits, where=f"{where}.key")
        size += _text_bytes(key)
        if kind == "get":
            ops.append(TxnOp("get", key))
            continue
        if key in written:
            raise bad_request(
                f"{where} writes key {key!r} a second time in {branch}; a transaction writes "
                "each key at most once per branch"
            )
        written.add(key)
        if kind == "put":
            value = check_value(item["value"], limits, where=f"{where}.value")
            size += _text_bytes(value)
            ops.append(TxnOp("put", key, value))
        else:
            ops.append(TxnOp("delete", key))
    return tuple(ops), size


def txn_from_post(body: bytes, limits: Limits) -> Txn:
    """``POST /txn {"compare": [...], "success": [...], "failure": [...]}`` (see the API
    document); bounded by ``limits.max_txn_ops`` and ``limits.max_txn_bytes``."""
    obj = parse_body(body, limits)
    _check_fields(obj, {"compare", "success", "failure"})
    compares_in = obj.get("compare", [])
    if not isinstance(compares_in, list):
        raise bad_request("compare must be a list of compares", ErrorCode.BAD_FIELD)
    count = len(compares_in) + sum(
        len(obj[b]) for b in ("success", "failure") if isinstance(obj.get(b), list)
    )
    if count > limits.max_txn_ops:
        raise too_large(
            f"the transaction has {count} compares and operations; the limit is "
            f"{limits.max_txn_ops} (limits.max_txn_ops)"
        )
    compares = []
    size = 0
    for i, item in enumerate(compares_in):
        compare, n = _compare(item, f"compare[{i}]", limits)
        compares.append(compare)
        size += n
    success, n_success = _txn_ops(obj, "success", limits)
    failure, n_failure = _txn_ops(obj, "failure", limits)
    size += n_success + n_failure
    if size > limits.max_txn_bytes:
        raise too_large(
            f"the transaction's keys and values are {size} bytes; the limit is "
            f"{limits.max_txn_bytes} bytes (limits.max_txn_bytes)"
        )
    return Txn(tuple(compares), success, failure)


# -- ranges ------------------------------------------------------------------------------------


def key_range(prefix: str | None, start: str | None, end: str | None, limits: Limits) -> KeyRange:
    """``GET /kv``'s selection: the keys under ``prefix`` (all when empty) that are also from
    ``start`` (inclusive) to ``end`` (exclusive); an ``end`` not after ``start`` selects none,
    as in etcd."""
    if prefix:
        check_key(prefix, limits, where="prefix")
    first = check_key(start, limits, where="start") if start else ""
    last = check_key(end, limits, where="end") if end else None
    return KeyRange.of_prefix(prefix or "").within(KeyRange.between(first, last))


def flag(arg: str | None, name: str) -> bool:
    if arg is None or arg in ("", "false"):
        return False
    if arg == "true":
        return True
    raise bad_request(f"{name} must be true or false, got {arg!r}", ErrorCode.BAD_PARAM)


_CONSISTENCY_BY_NAME = {level.value: level for level in Consistency}


def consistency(arg: str | None) -> Consistency:
    if arg is None or arg == "":
        return Consistency.LINEARIZABLE
    level = _CONSISTENCY_BY_NAME.get(arg)
    if level is None:
        raise bad_request(
            f"consistency must be one of {', '.join(Consistency)}, got {arg!r}",
            ErrorCode.BAD_PARAM,
        )
    return level


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
