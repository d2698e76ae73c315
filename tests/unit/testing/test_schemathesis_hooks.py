"""The fuzzer's hooks make generated cases safe and valid without changing what they test."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from raftnode.config import Limits
from raftnode.http.requests import txn_from_post
from tests.fuzz.schemathesis_hooks import _make_safe


def _case(path: str, body: Any, path_parameters: dict[str, Any] | None = None) -> Any:
    return SimpleNamespace(
        operation=SimpleNamespace(path=path),
        body=body,
        headers={},
        path_parameters=path_parameters or {},
    )


def test_a_branch_that_writes_a_key_twice_is_given_distinct_keys() -> None:
    body = {
        "compare": [{"key": "k", "target": "value", "op": "equal", "value": "v"}],
        "success": [
            {"op": "put", "key": "k", "value": "1"},
            {"op": "get", "key": "k"},
            {"op": "delete", "key": "k"},
            {"op": "put", "key": "k", "value": "3"},
        ],
        "failure": [{"op": "put", "key": "k", "value": "x"}, {"op": "delete", "key": "j"}],
    }
    case = _case("/txn", body)
    _make_safe(case)
    assert [op["key"] for op in body["success"]] == ["k", "k", "k#2", "k#3"]
    assert [op["key"] for op in body["failure"]] == ["k", "j"]
    assert body["compare"][0]["key"] == "k"
    txn_from_post(json.dumps(body).encode(), Limits())  # accepted: no write repeats a key


def test_a_renamed_key_never_collides_with_a_generated_one() -> None:
    body = {"success": [{"op": "put", "key": k, "value": ""} for k in ("a", "a#2", "a")]}
    _make_safe(_case("/txn", body))
    keys = [op["key"] for op in body["success"]]
    assert keys == ["a", "a#2", "a#3"]


def test_malformed_transactions_are_left_for_the_server_to_refuse() -> None:
    body = {"success": "not a list", "failure": [1, {"op": "put", "key": 7}]}
    _make_safe(_case("/txn", body))
    assert body == {"success": "not a list", "failure": [1, {"op": "put", "key": 7}]}


def test_promotion_of_a_member_id_is_moved_past_the_cluster() -> None:
    case = _case("/admin/v1/members/{id}/promote", None, {"id": 2})
    _make_safe(case)
    assert case.path_parameters["id"] == 1002
