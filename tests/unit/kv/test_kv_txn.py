"""Transactions in the store: compares, one branch, one revision, all or nothing."""

from __future__ import annotations

from pathlib import Path

from raftnode.kv.commands import Compare, KeyRevisions, Txn, TxnOp, decode_entry
from raftnode.kv.store import KeyValueStore
from tests.unit.kv.conftest import Applier


def put(key: str, value: str) -> TxnOp:
    return TxnOp("put", key, value)


def test_success_branch_writes_every_key_at_one_revision(store: KeyValueStore) -> None:
    a = Applier(store)
    a.upgrade()
    a.put("x", "1")
    r = a.txn(
        [Compare("x", "value", "equal", "1"), Compare("y", "exists", "equal", False)],
        [put("x", "2"), put("y", "1"), TxnOp("get", "x"), TxnOp("delete", "z")],
        [put("failed", "yes")],
    )
    assert r.succeeded and r.error is None and r.revision == 2 == store.revision
    put_x, put_y, get_x, delete_z = r.results
    assert (put_x.found, put_x.value, put_x.revisions) == (True, "1", KeyRevisions(1, 2, 2))
    assert (put_y.found, put_y.revisions) == (False, KeyRevisions(2, 2, 1))
    assert (get_x.found, get_x.value, get_x.revisions) == (True, "2", KeyRevisions(1, 2, 2))
    assert not delete_z.found  # deleting an absent key inside a txn is a no-op, not an error
    assert store.get("failed") is None
    assert {k: r.mod_revision for k, r in store.list()} == {"x": 2, "y": 2}


def test_reads_in_a_branch_see_the_writes_before_them(store: KeyValueStore) -> None:
    """The rows a txn read for its compares are reused until the branch writes the key: a get
    before a put sees the old row, one after it the new; a deleted key reads as absent."""
    a = Applier(store)
    a.upgrade()
    a.put("x", "1")
    a.put("y", "1")
    r = a.txn(
        [Compare("x", "version", "equal", 1), Compare("y", "exists", "equal", True)],
        [TxnOp("get", "x"), put("x", "2"), TxnOp("get", "x"), TxnOp("delete", "y"),
         TxnOp("get", "y")],
        [],
    )  # fmt: skip
    assert r.succeeded and r.revision == 3
    get_before, _, get_after, delete_y, get_y = r.results
    assert (get_before.value, get_before.revisions) == ("1", KeyRevisions(1, 1, 1))
    assert (get_after.value, get_after.revisions) == ("2", KeyRevisions(1, 3, 2))
    assert delete_y.found and not get_y.found and get_y.value is None
    assert store.get("y") is None and store.get("x") is not None


def test_failure_branch_runs_when_any_compare_fails(store: KeyValueStore) -> None:
    a = Applier(store)
    a.upgrade()
    a.put("x", "1")
    a.put("x", "1")  # version 2, mod_revision 2
    cases = [
        (Compare("x", "version", "greater", 2), False),
        (Compare("x", "version", "equal", 2), True),
        (Compare("x", "mod_revision", "less", 2), False),
        (Compare("x", "create_revision", "equal", 1), True),
        (Compare("x", "value", "not_equal", "1"), False),
        (Compare("x", "value", "less", "2"), True),
        (Compare("absent", "value", "equal", "1"), False),
        (Compare("absent", "value", "not_equal", "1"), False),  # etcd: never on an absent key
        (Compare("absent", "version", "equal", 0), True),
        (Compare("absent", "exists", "not_equal", True), True),
    ]
    for compare, holds in cases:
        r = a.txn([compare], [TxnOp("get", "x")], [TxnOp("get", "absent")])
        assert r.succeeded is holds, compare
        assert r.revision == 2  # reads only: no new revision
    r = a.txn([Compare("x", "value", "equal", "other")], [put("s", "1")], [put("f", "1")])
    assert not r.succeeded and store.get("s") is None and store.get("f") is not None


def test_a_txn_over_the_quota_changes_nothing(tmp_path: Path) -> None:
    with KeyValueStore.open(tmp_path / "kv.sqlite", max_store_bytes=40) as store:
        a = Applier(store)
        a.upgrade()
        a.put("a", "1234567890")
        r = a.txn([], [TxnOp("delete", "a"), put("b", "x" * 20), put("c", "y" * 20)])
        assert r.error == "quota_exceeded" and store.revision == 1
        assert [k for k, _ in store.list()] == ["a"]
        r = a.txn([], [TxnOp("delete", "a"), put("b", "x" * 20)])  # shrinks: allowed
        assert r.error is None and r.revision == 2


def test_a_keyed_txn_applies_once_and_another_body_is_refused(store: KeyValueStore) -> None:
    a = Applier(store)
    a.upgrade()
    first = a.txn([Compare("n", "version", "equal", 0)], [put("n", "1")], [], request_id="t1")
    again = a.txn([Compare("n", "version", "equal", 0)], [put("n", "1")], [], request_id="t1")
    assert again.replayed and again.succeeded and again.results == first.results
    assert store.revision == 1
    other = a.txn([], [put("n", "2")], [], request_id="t1")
    assert other.error == "idempotency_key_reused" and store.get("n").value == "1"  # type: ignore[union-attr]


def test_undecodable_txns_are_skipped_alike(store: KeyValueStore) -> None:
    a = Applier(store)
    for data in (
        b'{"op":"txn","c":[["k","value","equal",1]],"s":[],"f":[]}',
        b'{"op":"txn","c":[["k","exists","less",true]],"s":[],"f":[]}',
        b'{"op":"txn","c":[],"s":[["put","k"]],"f":[]}',
        b'{"op":"txn","c":[],"s":[["get","k","v"]],"f":[]}',
        b'{"op":"txn","c":[["k","version","equal",-1]],"s":[],"f":[]}',
        b'{"op":"txn","c":[]}',
    ):
        assert a.raw(data).error == "bad_command", data
    assert store.revision == 0


def test_txn_encoding_round_trips() -> None:
    txn = Txn(
        (Compare("k", "mod_revision", "equal", 3), Compare("é", "exists", "equal", True)),
        (TxnOp("put", "k", "v"), TxnOp("get", "k")),
        (TxnOp("delete", "k"),),
        "rid",
        2.5,
    )
    assert decode_entry(txn.encode()) == txn
    assert txn.fingerprint() == Txn(txn.compare, txn.success, txn.failure).fingerprint()
    assert txn.fingerprint() != Txn(txn.compare, txn.failure, txn.success).fingerprint()
