"""The lease requests (``/lease``) and their answers, shared by ``Client`` and ``AsyncClient``.

A grant names its own lease id, picked at random below 2^53 (the ids leaders pick stay below
that too): the nodes do not replay a grant by idempotency key, so a grant retried after an
attempt that may have applied would otherwise leave an orphan lease behind. With the id chosen
here, a retry that finds ``lease_exists`` means the earlier attempt applied. A revoke that
finds the lease gone (``lease_not_found``) is answered as "already gone", for the same reason.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from raftnode.client.errors import ServerError
from raftnode.client.operations import Call, answer_object, check_idempotency_key, int_field
from raftnode.client.retry import HttpAnswer

MIN_TTL, MAX_TTL = 1, 31_536_000
"""What the nodes accept as a TTL, in whole seconds."""
MAX_PICKED_ID = (1 << 53) - 1


@dataclass(frozen=True, slots=True)
class LeaseStatus:
    """A lease as the leader sees it: ``ttl`` seconds remain of ``granted_ttl``; ``keys``
    (``lease_info`` only) names at most 1000 of its keys, ``key_count`` counts them all."""

    id: int
    ttl: float
    granted_ttl: int
    keys: tuple[str, ...] | None = None
    key_count: int | None = None


def check_ttl(ttl: int) -> int:
    if type(ttl) is not int or not MIN_TTL <= ttl <= MAX_TTL:
        raise ValueError(
            f"a lease TTL is a whole number of seconds from {MIN_TTL} to {MAX_TTL}, not {ttl!r}"
        )
    return ttl


def check_lease_id(lease: int) -> int:
    if type(lease) is not int or not 1 <= lease <= (1 << 63) - 1:
        raise ValueError(f"a lease id is an integer from 1 to 2^63-1, not {lease!r}")
    return lease


def pick_id(rng: random.Random) -> int:
    return rng.randint(1, MAX_PICKED_ID)


def grant_call(ttl: int, lease: int) -> Call:
    body = json.dumps({"ttl": check_ttl(ttl), "id": check_lease_id(lease)}).encode()
    return Call("POST", "/lease", body, check_idempotency_key(None))


def keep_alive_call(lease: int) -> Call:
    return Call(
        "POST", f"/lease/{check_lease_id(lease)}/keepalive", None, check_idempotency_key(None)
    )


def revoke_call(lease: int) -> Call:
    return Call("DELETE", f"/lease/{check_lease_id(lease)}", None, check_idempotency_key(None))


def info_call(lease: int) -> Call:
    return Call("GET", f"/lease/{check_lease_id(lease)}", None)


def list_call() -> Call:
    return Call("GET", "/lease", None)


def _status(obj: Any, status: int) -> LeaseStatus:
    if not isinstance(obj, dict):
        raise ServerError(status, "bad_answer", "a lease is a JSON object", {"raw": obj})
    lease, granted = int_field(obj, "id"), int_field(obj, "granted_ttl")
    ttl = obj.get("ttl")
    if lease is None or granted is None or not isinstance(ttl, int | float):
        raise ServerError(status, "bad_answer", "not a lease's answer", obj)
    keys = obj.get("keys")
    return LeaseStatus(
        lease,
        float(ttl),
        granted,
        tuple(str(k) for k in keys) if isinstance(keys, list) else None,
        int_field(obj, "key_count"),
    )


def lease_status(answer: HttpAnswer) -> LeaseStatus:
    return _status(answer_object(answer), answer.status)


def lease_list(answer: HttpAnswer) -> list[LeaseStatus]:
    obj = answer_object(answer)
    leases = obj.get("leases")
    if not isinstance(leases, list):
        raise ServerError(answer.status, "bad_answer", "the answer carries no leases", obj)
    return [_status(item, answer.status) for item in leases]
