"""POST /txn, revision compares and key ranges are decoded strictly: every bad input is a 4xx
naming the problem (or the limit), and nothing reaches the log."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from raftnode.config import Limits
from raftnode.http import requests
from raftnode.http.errors import ApiError
from raftnode.kv.commands import Compare, TxnOp
from raftnode.kv.store import KeyRange

LIMITS = Limits()


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def refused(call: Any, status: int, code: str, *words: str) -> ApiError:
    with pytest.raises(ApiError) as info:
        call()
    err = info.value
    assert (err.status, err.code) == (status, code), err.body()
    for word in words:
        assert word in err.message, err.message
    return err


GOOD = {
    "compare": [
        {"key": "a", "target": "mod_revision", "op": "equal", "value": 3},
        {"key": "b", "target": "exists", "op": "not_equal", "value": True},
        {"key": "c", "target": "value", "op": "greater", "value": "x"},
        {"key": "d", "target": "version", "op": "less", "value": 2},
        {"key": "e", "target": "create_revision", "op": "not_equal", "value": 0},
    ],
    "success": [
        {"op": "put", "key": "a", "value": "1"},
        {"op": "delete", "key": "b"},
        {"op": "get", "key": "a"},
    ],
    "failure": [{"op": "get", "key": "a"}],
}


def test_a_good_txn_decodes_into_its_command() -> None:
    txn = requests.txn_from_post(body(GOOD), LIMITS)
    assert txn.compare[0] == Compare("a", "mod_revision", "equal", 3)
    assert txn.compare[1] == Compare("b", "exists", "not_equal", True)
    assert txn.success == (TxnOp("put", "a", "1"), TxnOp("delete", "b"), TxnOp("get", "a"))
    assert txn.failure == (TxnOp("get", "a"),)
    empty = requests.txn_from_post(b"{}", LIMITS)
    assert (empty.compare, empty.success, empty.failure) == ((), (), ())


@pytest.mark.parametrize(
    ("change", "code", "words"),
    [
        ({"extra": 1}, "bad_field", ["unknown field(s) extra"]),
        ({"compare": {}}, "bad_field", ["compare must be a list"]),
        ({"success": "put"}, "bad_field", ["success must be a list"]),
        ({"compare": [1]}, "bad_field", ["compare[0] must be a JSON object"]),
        (
            {"compare": [{"key": "a", "target": "value", "op": "equal"}]},
            "bad_field",
            ["needs value"],
        ),
        (
            {"compare": [{"key": "a", "target": "lease", "op": "equal", "value": 1}]},
            "bad_field",
            ["compare[0].target must be one of value, mod_revision"],
        ),
        (
            {"compare": [{"key": "a", "target": "value", "op": "like", "value": "x"}]},
            "bad_field",
            ["compare[0].op must be one of equal, not_equal, less, greater"],
        ),
        (
            {"compare": [{"key": "a", "target": "value", "op": "equal", "value": 1}]},
            "bad_value",
            ["compare[0].value must be a string"],
        ),
        (
            {"compare": [{"key": "a", "target": "version", "op": "equal", "value": "1"}]},
            "bad_value",
            ["compare[0].value must be an integer"],
        ),
        (
            {"compare": [{"key": "a", "target": "mod_revision", "op": "equal", "value": -1}]},
            "bad_value",
            ["from 0 to"],
        ),
        (
            {"compare": [{"key": "a", "target": "mod_revision", "op": "equal", "value": True}]},
            "bad_value",
            ["must be an integer"],
        ),
        (
            {"compare": [{"key": "a", "target": "exists", "op": "less", "value": True}]},
            "bad_request",
            ["equal or not_equal for target exists"],
        ),
        (
            {"compare": [{"key": "a", "target": "exists", "op": "equal", "value": 1}]},
            "bad_request",
            ["true or false"],
        ),
        (
            {"compare": [{"key": "", "target": "exists", "op": "equal", "value": True}]},
            "bad_key",
            ["compare[0].key must not be empty"],
        ),
        ({"success": [{"op": "lock", "key": "a"}]}, "bad_field", ["success[0].op must be one"]),
        ({"success": [{"key": "a"}]}, "bad_field", ["success[0].op must be one"]),
        ({"success": [{"op": "put", "key": "a"}]}, "bad_field", ["success[0] needs value"]),
        (
            {"failure": [{"op": "get", "key": "a", "value": "x"}]},
            "bad_field",
            ["failure[0] has unknown field(s) value"],
        ),
        (
            {"success": [{"op": "put", "key": "a\u0001", "value": "x"}]},
            "bad_key",
            ["success[0].key contains the control character"],
        ),
        (
            {"success": [{"op": "put", "key": "a", "value": None}]},
            "bad_value",
            ["success[0].value must be a string"],
        ),
        (
            {"success": [{"op": "put", "key": "a", "value": "1"}, {"op": "delete", "key": "a"}]},
            "bad_request",
            ["writes key 'a' a second time in success"],
        ),
    ],
)
def test_bad_txns_are_400(change: dict[str, Any], code: str, words: list[str]) -> None:
    refused(lambda: requests.txn_from_post(body({**GOOD, **change}), LIMITS), 400, code, *words)


def test_gets_and_other_branches_may_name_a_written_key_again() -> None:
    txn = requests.txn_from_post(
        body(
            {
                "success": [{"op": "put", "key": "a", "value": "1"}, {"op": "get", "key": "a"}],
                "failure": [{"op": "delete", "key": "a"}],
            }
        ),
        LIMITS,
    )
    assert len(txn.success) == 2 and len(txn.failure) == 1


def test_txn_limits_are_413_naming_the_limit() -> None:
    limits = replace(LIMITS, max_txn_ops=3, max_txn_bytes=1024)
    four = {"success": [{"op": "get", "key": f"k{i}"} for i in range(4)]}
    refused(
        lambda: requests.txn_from_post(body(four), limits), 413, "too_large", "limits.max_txn_ops"
    )
    big = {"success": [{"op": "put", "key": "k", "value": "v" * 1030}]}
    refused(
        lambda: requests.txn_from_post(body(big), limits), 413, "too_large", "limits.max_txn_bytes"
    )
    requests.txn_from_post(body({"success": four["success"][:3]}), limits)


def test_prev_revision_on_writes() -> None:
    cmd = requests.put_from_post(body({"key": "k", "value": "v", "prev_revision": 7}), LIMITS)
    assert cmd.prev_revision == 7 and not cmd.cas
    cmd = requests.put_from_put("k", body({"value": "v", "prev_revision": 0}), LIMITS)
    assert cmd.prev_revision == 0
    cmd = requests.delete_command("k", b"", None, LIMITS, "12")
    assert cmd.prev_revision == 12
    cmd = requests.delete_command("k", body({"prev_revision": 3}), None, LIMITS)
    assert cmd.prev_revision == 3
    for bad in (-1, 1.5, "7", None, True, 1 << 63):
        refused(
            lambda bad=bad: requests.put_from_post(
                body({"key": "k", "value": "v", "prev_revision": bad}), LIMITS
            ),
            400,
            "bad_value",
            "prev_revision must be an integer",
        )
    for arg in ("-1", "x", "", "1.0", "٣"):
        refused(
            lambda arg=arg: requests.delete_command("k", b"", None, LIMITS, arg),
            400,
            "bad_param",
            "prev_revision must be an integer",
        )


def test_key_ranges() -> None:
    assert requests.key_range(None, "a", "c", LIMITS) == KeyRange(b"a", b"c")
    assert requests.key_range(None, "a", None, LIMITS) == KeyRange(b"a", None)
    assert requests.key_range(None, None, "c", LIMITS) == KeyRange(b"", b"c")
    assert requests.key_range("p/", None, None, LIMITS) == KeyRange(b"p/", b"p0")
    assert requests.key_range(None, None, None, LIMITS) == KeyRange(b"", None)
    assert requests.key_range("p/", "p/b", "q", LIMITS) == KeyRange(b"p/b", b"p0")  # both hold
    assert requests.key_range("p/", "a", "p/c", LIMITS) == KeyRange(b"p/", b"p/c")
    refused(lambda: requests.key_range(None, "a\n", None, LIMITS), 400, "bad_key", "start")
    refused(lambda: requests.key_range(None, None, "\x7f", LIMITS), 400, "bad_key", "end")
    refused(lambda: requests.key_range("\x7f", None, None, LIMITS), 400, "bad_key", "prefix")
    assert requests.flag("true", "count_only") and not requests.flag("false", "count_only")
    refused(lambda: requests.flag("yes", "count_only"), 400, "bad_param", "true or false")
