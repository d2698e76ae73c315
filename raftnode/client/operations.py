"""The requests behind each client operation and the results read from their answers.

Shared by ``Client`` and ``AsyncClient``: a ``Call`` is built once per operation (so a write's
body and idempotency key are the same bytes on every retry), and a ``HttpAnswer`` becomes a
typed result here.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Literal

from raftnode.client.errors import ServerError
from raftnode.client.retry import HttpAnswer
from raftnode.consistency import Consistency

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "idempotent-replayed"
REVISION_HEADER = "x-raftnode-revision"
_IDEMPOTENCY_KEY = re.compile(r"[!-~]{1,128}")


class Unset(Enum):
    """The type of ``UNSET``."""

    UNSET = "unset"


UNSET: Final = Unset.UNSET
"""``prev_value`` left out: an unconditional write."""

PrevValue = str | None | Literal[Unset.UNSET]
"""Compare-and-set: a string (the key must hold it), None (the key must be absent), or UNSET."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    """A key as read: its value and the store revision that last modified it."""

    key: str
    value: str
    mod_revision: int | None
    create_revision: int | None = None
    """The revision that created the key (since its last delete)."""
    version: int | None = None
    """Writes to the key since it was created (1 after the create)."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """An applied write. ``revision`` is the store's revision after it; ``created`` (puts)
    tells a new key from an overwritten one; ``prev_value`` is the value it replaced;
    ``replayed`` is True when the node answered a retry with the write's first outcome."""

    key: str
    revision: int
    created: bool | None
    prev_value: str | None
    replayed: bool
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing; ``more`` means keys after ``items[-1]`` match too."""

    items: list[KeyValue]
    more: bool
    revision: int


@dataclass(frozen=True, slots=True)
class Count:
    """How many keys a range holds, at the store's ``revision``."""

    count: int
    revision: int


@dataclass(frozen=True, slots=True)
class Call:
    """One operation's request: sent unchanged on every attempt."""

    method: str
    path: str
    body: bytes | None
    idempotency_key: str | None = None

    @property
    def is_write(self) -> bool:
        return self.idempotency_key is not None


def _quote_key(key: str) -> str:
    _check_key(key)
    return urllib.parse.quote(key, safe="")


def _check_key(key: str, what: str = "key") -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"the {what} must be a non-empty string, not {key!r}")


def _body(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def check_idempotency_key(key: str | None) -> str:
    """The caller's key, or a new uuid4; a key the nodes would refuse raises ValueError."""
    if key is None:
        return str(uuid.uuid4())
    if not isinstance(key, str) or not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ValueError(
            f"idempotency key {key!r}: 1 to 128 printable ASCII characters without spaces"
        )
    return key


def consistency_param(consistency: Consistency | str) -> str:
    try:
        return Consistency(consistency).value
    except ValueError:
        allowed = ", ".join(c.value for c in Consistency)
        raise ValueError(f"consistency {consistency!r}: use one of {allowed}") from None


def get_call(key: str, consistency: Consistency | str) -> Call:
    query = urllib.parse.urlencode({"consistency": consistency_param(consistency)})
    return Call("GET", f"/kv/{_quote_key(key)}?{query}", None)


MAX_REVISION = (1 << 63) - 1


def check_revision(revision: int, what: str) -> int:
    """A revision the nodes accept: an integer from 0 to 2^63-1."""
    if type(revision) is not int or not 0 <= revision <= MAX_REVISION:
        raise ValueError(f"{what} must be an integer from 0 to {MAX_REVISION}, not {revision!r}")
    return revision


def put_call(
    key: str,
    value: str,
    prev_value: PrevValue,
    idempotency_key: str | None,
    prev_revision: int | None = None,
    lease: int | None = None,
) -> Call:
    _check_key(key)
    if not isinstance(value, str):
        raise ValueError(f"the value must be a string, not {type(value).__name__}")
    obj: dict[str, Any] = {"key": key, "value": value}
    if prev_value is not UNSET:
        if prev_value is not None and not isinstance(prev_value, str):
            raise ValueError("prev_value must be a string, None (absent) or UNSET")
        obj["prev_value"] = prev_value
    if prev_revision is not None:
        obj["prev_revision"] = check_revision(prev_revision, "prev_revision")
    if lease is not None:
        if type(lease) is not int or not 1 <= lease <= MAX_REVISION:
            raise ValueError(f"lease must be a lease id (an integer from 1), not {lease!r}")
        obj["lease"] = lease
    return Call("POST", "/kv", _body(obj), check_idempotency_key(idempotency_key))


def delete_call(
    key: str,
    prev_value: str | Unset,
    idempotency_key: str | None,
    prev_revision: int | None = None,
) -> Call:
    path = f"/kv/{_quote_key(key)}"
    obj: dict[str, Any] = {}
    if prev_value is not UNSET:
        if not isinstance(prev_value, str):
            raise ValueError("a delete's prev_value must be a string (or UNSET)")
        obj["prev_value"] = prev_value
    if prev_revision is not None:
        obj["prev_revision"] = check_revision(prev_revision, "prev_revision")
    body = _body(obj) if obj else None
    return Call("DELETE", path, body, check_idempotency_key(idempotency_key))


def _range_params(prefix: str, start: str | None, end: str | None) -> dict[str, str]:
    if not isinstance(prefix, str):
        raise ValueError(f"the prefix must be a string, not {prefix!r}")
    params: dict[str, str] = {"prefix": prefix}
    if start is not None:
        _check_key(start, "range start")
        params["start"] = start
    if end is not None:
        _check_key(end, "range end")
        params["end"] = end
    return params


def count_call(
    prefix: str, start: str | None, end: str | None, consistency: Consistency | str
) -> Call:
    params = _range_params(prefix, start, end)
    params["count_only"] = "true"
    params["consistency"] = consistency_param(consistency)
    return Call("GET", "/kv?" + urllib.parse.urlencode(params), None)


def page_call(
    prefix: str,
    limit: int | None,
    start_after: str | None,
    consistency: Consistency | str,
    start: str | None = None,
    end: str | None = None,
) -> Call:
    params = _range_params(prefix, start, end)
    if limit is not None:
        if not 1 <= limit <= 10000:
            raise ValueError(f"page size {limit}: between 1 and 10000")
        params["limit"] = str(limit)
    if start_after is not None:
        _check_key(start_after, "start_after cursor")
        params["start_after"] = start_after
    params["consistency"] = consistency_param(consistency)
    return Call("GET", "/kv?" + urllib.parse.urlencode(params), None)


# -- answers -----------------------------------------------------------------------------------


def answer_object(answer: HttpAnswer) -> dict[str, Any]:
    try:
        obj = json.loads(answer.body)
    except (ValueError, UnicodeDecodeError):
        obj = None
    if not isinstance(obj, dict):
        raise ServerError(
            answer.status, "bad_answer", "the answer is not a JSON object", {"raw": answer.body}
        )
    return obj


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def int_field(obj: dict[str, Any], name: str) -> int | None:
    """An integer field of an answer, or None when absent or not an integer."""
    value = obj.get(name)
    return value if type(value) is int else None


def key_value(key: str, answer: HttpAnswer) -> KeyValue:
    obj = answer_object(answer)
    value = obj.get("value")
    if not isinstance(value, str):
        raise ServerError(answer.status, "bad_answer", "the answer carries no value", obj)
    mod_revision = int_field(obj, "mod_revision")
    if mod_revision is None:
        mod_revision = _int_or_none(answer.headers.get(REVISION_HEADER))
    return KeyValue(
        key, value, mod_revision, int_field(obj, "create_revision"), int_field(obj, "version")
    )


def write_result(call: Call, key: str, answer: HttpAnswer) -> WriteResult:
    obj = answer_object(answer)
    revision = obj.get("revision")
    if not isinstance(revision, int):
        revision = _int_or_none(answer.headers.get(REVISION_HEADER)) or 0
    created = obj.get("created")
    prev = obj.get("prev_value")
    return WriteResult(
        key=key,
        revision=revision,
        created=created if isinstance(created, bool) else None,
        prev_value=prev if isinstance(prev, str) else None,
        replayed=answer.headers.get(REPLAYED_HEADER, "").lower() == "true",
        idempotency_key=call.idempotency_key or "",
    )


def page(answer: HttpAnswer) -> Page:
    obj = answer_object(answer)
    items = obj.get("items")
    if not isinstance(items, list):
        raise ServerError(answer.status, "bad_answer", "the listing carries no items", obj)
    kvs = [
        KeyValue(
            str(it["key"]),
            str(it["value"]),
            int_field(it, "mod_revision"),
            int_field(it, "create_revision"),
            int_field(it, "version"),
        )
        for it in items
        if isinstance(it, dict) and "key" in it and "value" in it
    ]
    revision = obj.get("revision")
    return Page(kvs, bool(obj.get("more")), revision if isinstance(revision, int) else 0)


def count(answer: HttpAnswer) -> Count:
    obj = answer_object(answer)
    counted = int_field(obj, "count")
    if counted is None:
        raise ServerError(answer.status, "bad_answer", "the answer carries no count", obj)
    return Count(counted, int_field(obj, "revision") or 0)
