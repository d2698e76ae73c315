"""Transactions, revision compares and counts as the client builds and reads them."""

from __future__ import annotations

import json

import pytest

from raftnode.client import Compare, Txn, TxnOp
from raftnode.client import operations as ops
from raftnode.client.retry import HttpAnswer
from raftnode.client.txn import txn_call, txn_result


def test_compares_accept_symbols_and_refuse_what_the_nodes_would() -> None:
    assert Compare.mod_revision("a", "<", 5).op == "less"
    assert Compare.value_is("a", "!=", "x").to_json() == {
        "key": "a",
        "target": "value",
        "op": "not_equal",
        "value": "x",
    }
    assert Compare.exists("a", False).to_json()["value"] is False
    for bad in (
        lambda: Compare("a", "value", "==", 3),
        lambda: Compare("a", "version", "==", -1),
        lambda: Compare("a", "version", "==", True),
        lambda: Compare("a", "exists", "<", True),
        lambda: Compare("a", "colour", "==", "red"),
        lambda: Compare("", "value", "==", "x"),
        lambda: TxnOp.put("a", 5),  # type: ignore[arg-type]
        lambda: TxnOp("get", "a", "v"),
        lambda: TxnOp("patch", "a"),
    ):
        with pytest.raises(ValueError):
            bad()


def test_a_transaction_round_trips_through_its_wire_format_and_names_bad_fields() -> None:
    txn = Txn(
        (Compare.version("a", "==", 0),),
        (TxnOp.put("a", "1"), TxnOp.get("b")),
        (TxnOp.delete("a"),),
    )
    assert Txn.from_json(json.loads(json.dumps(txn.to_json()))) == txn
    call = txn_call(txn, None)
    assert call.method == "POST" and call.path == "/txn" and call.is_write
    assert json.loads(call.body or b"") == txn.to_json()
    with pytest.raises(ValueError, match=r"success\[0\] needs key"):
        Txn.from_json({"success": [{"op": "put", "value": "x"}]})
    with pytest.raises(ValueError, match="unknown field"):
        Txn.from_json({"compare": [], "then": []})
    with pytest.raises(ValueError, match="must be a list"):
        Txn.from_json({"failure": {}})


def test_the_answer_becomes_a_typed_result() -> None:
    body = {
        "succeeded": False,
        "revision": 12,
        "results": [
            {"op": "get", "key": "a", "found": True, "value": "x", "mod_revision": 9},
            {"op": "delete", "key": "b", "deleted": True, "prev_value": "y"},
        ],
    }
    call = txn_call(Txn(), "k-1")
    answer = HttpAnswer(200, {"idempotent-replayed": "true"}, json.dumps(body).encode())
    result = txn_result(call, answer)
    assert not result.succeeded and result.revision == 12 and result.replayed
    assert result.idempotency_key == "k-1"
    assert result.responses[0].value == "x" and result.responses[0].mod_revision == 9
    assert result.responses[1].deleted and result.responses[1].prev_value == "y"


def test_revision_compare_and_set_and_counts_in_the_requests() -> None:
    put = ops.put_call("k", "v", ops.UNSET, None, prev_revision=0)
    assert json.loads(put.body or b"") == {"key": "k", "value": "v", "prev_revision": 0}
    delete = ops.delete_call("k", ops.UNSET, None, prev_revision=7)
    assert json.loads(delete.body or b"") == {"prev_revision": 7}
    assert ops.delete_call("k", ops.UNSET, None).body is None
    with pytest.raises(ValueError, match="prev_revision"):
        ops.put_call("k", "v", ops.UNSET, None, prev_revision=-1)
    count = ops.count_call("p/", "p/b", None, "stale")
    assert count.path == "/kv?prefix=p%2F&start=p%2Fb&count_only=true&consistency=stale"
    answer = HttpAnswer(200, {}, b'{"count": 3, "revision": 40}')
    assert ops.count(answer) == ops.Count(3, 40)
