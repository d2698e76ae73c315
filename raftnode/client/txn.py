"""Multi-key transactions (``POST /txn``): typed compares and operations, and the result.

    from raftnode.client import Compare, TxnOp

    result = kv.txn(
        compare=[Compare.mod_revision("config/a", "==", 12), Compare.exists("lock", False)],
        success=[TxnOp.put("config/a", "on"), TxnOp.put("lock", "me")],
        failure=[TxnOp.get("config/a")],
    )
    if not result.succeeded: ...

Every compare must hold for ``success`` to run, else ``failure`` runs; either way the whole
transaction is one log entry applied at one revision. ``Txn.from_json`` reads the wire format
(the same JSON ``raftnode kv txn`` takes), so a transaction from a file is checked before it is
sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from raftnode.client.errors import ServerError
from raftnode.client.operations import (
    REPLAYED_HEADER,
    Call,
    answer_object,
    check_idempotency_key,
    check_revision,
    int_field,
)
from raftnode.client.retry import HttpAnswer

TARGETS = ("value", "mod_revision", "create_revision", "version", "exists")
OPS = ("equal", "not_equal", "less", "greater")
_OP_SPELLINGS = {"==": "equal", "=": "equal", "!=": "not_equal", "<": "less", ">": "greater"}

Target = Literal["value", "mod_revision", "create_revision", "version", "exists"]
OpKind = Literal["put", "delete", "get"]


def _key(key: Any, where: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"{where}: the key must be a non-empty string, not {key!r}")
    return key


@dataclass(frozen=True, slots=True)
class Compare:
    """One condition: ``key``'s ``target`` compared by ``op`` with ``value``. Targets:
    ``value`` (a string), ``mod_revision``/``create_revision``/``version`` (integers; 0 for
    an absent key), ``exists`` (a bool, equal or not_equal only). Ops: equal, not_equal,
    less, greater (or ``==``, ``!=``, ``<``, ``>``)."""

    key: str
    target: str
    op: str
    value: str | int | bool

    def __post_init__(self) -> None:
        where = f"compare on {self.key!r}"
        _key(self.key, "compare")
        if self.target not in TARGETS:
            raise ValueError(f"{where}: target {self.target!r}, use one of {', '.join(TARGETS)}")
        op = _OP_SPELLINGS.get(self.op, self.op)
        if op not in OPS:
            raise ValueError(
                f"{where}: op {self.op!r}, use one of {', '.join(OPS)} (or ==, !=, <, >)"
            )
        object.__setattr__(self, "op", op)
        if self.target == "value":
            if not isinstance(self.value, str):
                raise ValueError(f"{where}: a value compare needs a string, not {self.value!r}")
        elif self.target == "exists":
            if not isinstance(self.value, bool):
                raise ValueError(f"{where}: an exists compare needs True or False")
            if op not in ("equal", "not_equal"):
                raise ValueError(f"{where}: an exists compare takes equal or not_equal only")
        else:
            check_revision(self.value, f"{where}: {self.target}")  # type: ignore[arg-type]

    @classmethod
    def value_is(cls, key: str, op: str, value: str) -> Compare:
        return cls(key, "value", op, value)

    @classmethod
    def mod_revision(cls, key: str, op: str, revision: int) -> Compare:
        return cls(key, "mod_revision", op, revision)

    @classmethod
    def create_revision(cls, key: str, op: str, revision: int) -> Compare:
        return cls(key, "create_revision", op, revision)

    @classmethod
    def version(cls, key: str, op: str, version: int) -> Compare:
        return cls(key, "version", op, version)

    @classmethod
    def exists(cls, key: str, exists: bool = True) -> Compare:
        return cls(key, "exists", "equal", exists)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "target": self.target, "op": self.op, "value": self.value}


@dataclass(frozen=True, slots=True)
class TxnOp:
    """One operation of a branch: ``put`` (with ``value``), ``delete`` or ``get``."""

    op: str
    key: str
    value: str | None = None

    def __post_init__(self) -> None:
        if self.op not in ("put", "delete", "get"):
            raise ValueError(f"operation {self.op!r}: use put, delete or get")
        _key(self.key, f"{self.op} operation")
        if self.op == "put" and not isinstance(self.value, str):
            raise ValueError(f"put {self.key!r}: the value must be a string, not {self.value!r}")
        if self.op != "put" and self.value is not None:
            raise ValueError(f"{self.op} {self.key!r} takes no value")

    @classmethod
    def put(cls, key: str, value: str) -> TxnOp:
        return cls("put", key, value)

    @classmethod
    def delete(cls, key: str) -> TxnOp:
        return cls("delete", key)

    @classmethod
    def get(cls, key: str) -> TxnOp:
        return cls("get", key)

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"op": self.op, "key": self.key}
        if self.op == "put":
            obj["value"] = self.value
        return obj


@dataclass(frozen=True, slots=True)
class Txn:
    """A whole transaction: compares, then ``success`` or ``failure``."""

    compare: tuple[Compare, ...] = ()
    success: tuple[TxnOp, ...] = ()
    failure: tuple[TxnOp, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "compare": [c.to_json() for c in self.compare],
            "success": [o.to_json() for o in self.success],
            "failure": [o.to_json() for o in self.failure],
        }

    @classmethod
    def from_json(cls, obj: Any) -> Txn:
        """The wire format (``{"compare": [...], "success": [...], "failure": [...]}``);
        ValueError naming the first problem."""
        if not isinstance(obj, dict):
            raise ValueError("a transaction is a JSON object with compare, success, failure")
        unknown = sorted(set(obj) - {"compare", "success", "failure"})
        if unknown:
            raise ValueError(
                f"unknown field(s) {', '.join(unknown)}; a transaction has compare, success, "
                "failure"
            )
        compares = []
        for i, item in enumerate(_list(obj, "compare")):
            where = f"compare[{i}]"
            fields = _fields(item, where, {"key", "target", "op", "value"}, set())
            try:
                compares.append(Compare(**fields))
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
        branches = []
        for branch in ("success", "failure"):
            ops = []
            for i, item in enumerate(_list(obj, branch)):
                where = f"{branch}[{i}]"
                fields = _fields(item, where, {"op", "key"}, {"value"})
                try:
                    ops.append(TxnOp(**fields))
                except ValueError as e:
                    raise ValueError(f"{where}: {e}") from None
            branches.append(tuple(ops))
        return cls(tuple(compares), branches[0], branches[1])


def _list(obj: dict[str, Any], name: str) -> list[Any]:
    items = obj.get(name, [])
    if not isinstance(items, list):
        raise ValueError(f"{name} must be a list")
    return items


def _fields(item: Any, where: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be a JSON object")
    missing = sorted(required - set(item))
    unknown = sorted(set(item) - required - optional)
    if missing or unknown:
        problem = f"needs {', '.join(missing)}" if missing else f"has unknown {', '.join(unknown)}"
        raise ValueError(f"{where} {problem}")
    return dict(item)


@dataclass(frozen=True, slots=True)
class TxnResponse:
    """One operation's result. ``get``: ``found``, ``value`` and the key's revisions;
    ``put``: ``created``, ``prev_value`` and the key's new revisions; ``delete``: ``deleted``
    and ``prev_value``."""

    op: str
    key: str
    found: bool | None = None
    created: bool | None = None
    deleted: bool | None = None
    value: str | None = None
    prev_value: str | None = None
    create_revision: int | None = None
    mod_revision: int | None = None
    version: int | None = None


@dataclass(frozen=True, slots=True)
class TxnResult:
    """``succeeded``: every compare held (``success`` ran); ``revision``: the store's revision
    after the transaction; ``responses``: one per operation of the branch that ran.
    ``replayed``: a retry answered with the first outcome (it was applied once)."""

    succeeded: bool
    revision: int
    responses: list[TxnResponse] = field(default_factory=list)
    replayed: bool = False
    idempotency_key: str = ""


def txn_call(txn: Txn, idempotency_key: str | None) -> Call:
    body = json.dumps(txn.to_json(), separators=(",", ":")).encode()
    return Call("POST", "/txn", body, check_idempotency_key(idempotency_key))


def _optional(obj: dict[str, Any], name: str, kind: type) -> Any:
    value = obj.get(name)
    return value if isinstance(value, kind) else None


def txn_result(call: Call, answer: HttpAnswer) -> TxnResult:
    obj = answer_object(answer)
    succeeded, revision, results = obj.get("succeeded"), obj.get("revision"), obj.get("results")
    if (
        not isinstance(succeeded, bool)
        or type(revision) is not int
        or not isinstance(results, list)
    ):
        raise ServerError(answer.status, "bad_answer", "not a transaction's answer", obj)
    responses = [
        TxnResponse(
            op=str(r.get("op")),
            key=str(r.get("key")),
            found=_optional(r, "found", bool),
            created=_optional(r, "created", bool),
            deleted=_optional(r, "deleted", bool),
            value=_optional(r, "value", str),
            prev_value=_optional(r, "prev_value", str),
            create_revision=int_field(r, "create_revision"),
            mod_revision=int_field(r, "mod_revision"),
            version=int_field(r, "version"),
        )
        for r in results
        if isinstance(r, dict)
    ]
    return TxnResult(
        succeeded,
        revision,
        responses,
        replayed=answer.headers.get(REPLAYED_HEADER, "").lower() == "true",
        idempotency_key=call.idempotency_key or "",
    )
