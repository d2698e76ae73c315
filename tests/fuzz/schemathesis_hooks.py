"""Schemathesis hooks for ``test_schemathesis.py`` (loaded through ``SCHEMATHESIS_HOOKS``).

Admin operations may reshape the cluster under fuzzing. To keep the three-node cluster usable
for the whole run, removal and promotion only ever name ids that cannot be members: a generated
id below ``FIRST_FOREIGN_ID`` is moved up past it (the cluster's own ids are 1-3). Adding
learners with any id stays in: a learner never counts towards the quorum.
"""

from __future__ import annotations

import uuid
from typing import Any

import schemathesis
from schemathesis.core.failures import ServerError
from schemathesis.openapi.checks import EnsureResourceAvailability

FIRST_FOREIGN_ID = 1000
IDEMPOTENCY_HEADER = "Idempotency-Key"
_MEMBER_PATHS = ("/admin/v1/members/{id}", "/admin/v1/members/{id}/promote")


def _make_safe(case: Any) -> None:
    """Give a write its own Idempotency-Key, make a transaction's branches valid (see
    ``_write_each_key_once``), and point a removal or promotion at an id that cannot be a
    member (ids may come as integers or, from the coverage phase, as strings)."""
    if case.headers and IDEMPOTENCY_HEADER in case.headers:
        case.headers[IDEMPOTENCY_HEADER] = f"fuzz-{uuid.uuid4().hex}"
    if case.operation.path == "/txn" and isinstance(case.body, dict):
        _write_each_key_once(case.body)
    if case.operation.path not in _MEMBER_PATHS or not case.path_parameters:
        return
    member = case.path_parameters.get("id")
    if isinstance(member, bool):
        return
    if isinstance(member, int) and member < FIRST_FOREIGN_ID:
        case.path_parameters["id"] = member + FIRST_FOREIGN_ID
    elif isinstance(member, str):
        digits = member.strip()
        if digits.isascii() and digits.isdigit() and int(digits) < FIRST_FOREIGN_ID:
            case.path_parameters["id"] = str(int(digits) + FIRST_FOREIGN_ID)


def _write_each_key_once(txn: dict[str, Any]) -> None:
    """Rename a key that a branch of a generated transaction writes again (``key#2``, ...).

    A branch writes each key at most once, and a second write is refused with 400 as
    documented; JSON Schema cannot say "unique by key", so without this the fuzzer reports
    that refusal as a schema-valid request rejected (ST202). The refusal itself is tested
    in ``tests/unit/http/test_requests_txn.py``.
    """
    for branch in ("success", "failure"):
        ops = txn.get(branch)
        if not isinstance(ops, list):
            continue
        written: set[str] = set()
        for op in ops:
            if not isinstance(op, dict) or op.get("op") not in ("put", "delete"):
                continue
            key = op.get("key")
            if not isinstance(key, str):
                continue
            unique, n = key, 1
            while unique in written:
                n += 1
                unique = f"{key}#{n}"
            op["key"] = unique
            written.add(unique)


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    """Generated cases: see ``_make_safe``. Generated Idempotency-Keys repeat across cases
    with other bodies, and reusing a key for another write is refused by design (422, tested
    on its own in ``tests/integration/test_hostile_input.py``)."""
    _make_safe(case)
    return case


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: Any) -> None:
    """Every case, whichever phase made it (examples and coverage too), just before it is
    sent: see ``_make_safe``."""
    _make_safe(case)


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure except "server error" for the documented 503 and 504 (nothing done,
    retry / outcome unknown; whether the operation documents them is still checked:
    ``status_code_conformance`` flags a 503 or 504 an operation does not list, and any 500),
    and "created resource not found" where the 404 names a generated lease id, not the key
    just created (a put that attaches a lease nobody granted is refused, as documented)."""
    documented = {"503", "504"} & set(case.operation.definition.raw.get("responses", {}))
    if isinstance(failure, ServerError) and str(response.status_code) in documented:
        return False
    return not (isinstance(failure, EnsureResourceAvailability) and _names_unknown_lease(response))


def _names_unknown_lease(response: Any) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return (
        response.status_code == 404
        and isinstance(body, dict)
        and body.get("error") == "lease_not_found"
    )
