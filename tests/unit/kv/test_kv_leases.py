"""Leases in the store: the table is replicated state changed only by log entries (grant,
attach on put, revoke deleting the attached keys at one revision), kept in the file and so in
every snapshot; the store reaches it through the format upgrade to 4, like the history window."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftnode.kv.commands import (
    LEASE_FORMAT,
    LEASE_PROTOCOL_VERSION,
    Command,
    CommandResult,
    FormatUpgrade,
    LeaseGrant,
    LeaseRevoke,
    Outcome,
    TxnOp,
    decode_entry,
)
from raftnode.kv.leases import MAX_LEASES
from raftnode.kv.store import KeyValueStore, StoreFormatError, inspect_snapshot
from tests.unit.kv.conftest import Applier


def lease_op(a: Applier, cmd: LeaseGrant | LeaseRevoke) -> CommandResult:
    result = a.raw(cmd.encode())
    assert isinstance(result, CommandResult)
    return result


def leased_store(store: KeyValueStore) -> Applier:
    a = Applier(store)
    assert a.raw(FormatUpgrade(LEASE_FORMAT).encode()).ok
    assert store.format_version == LEASE_FORMAT and store.leases is not None
    return a


def test_lease_entries_round_trip_and_need_the_lease_protocol() -> None:
    for cmd in (LeaseGrant(7, 30), LeaseRevoke(7), LeaseRevoke(7, expired=True)):
        assert decode_entry(cmd.encode()) == cmd
        assert cmd.needs_protocol == LEASE_PROTOCOL_VERSION
    put = Command("put", "k", "v", lease=7)
    assert decode_entry(put.encode()) == put and put.needs_protocol == LEASE_PROTOCOL_VERSION
    assert put.fingerprint() != Command("put", "k", "v").fingerprint()
    assert FormatUpgrade(LEASE_FORMAT).needs_protocol == LEASE_PROTOCOL_VERSION
    for bad in (b'{"op":"lease_grant","id":0,"ttl":5}', b'{"op":"lease_grant","id":1,"ttl":0}'):
        with pytest.raises(TypeError):
            decode_entry(bad)


def test_grant_attach_and_revoke_deletes_the_keys_at_one_revision(store: KeyValueStore) -> None:
    a = leased_store(store)
    assert lease_op(a, LeaseGrant(7, 30)).ok
    assert store.leases is not None and store.leases.ttl(7) == 30 and len(store.leases) == 1
    assert a.put("x", "1", lease=7).ok and a.put("y", "2", lease=7).ok
    assert a.put("z", "3").ok
    assert store.leases.keys(7, 10) == ["x", "y"] and store.leases.lease_of("x") == 7
    before = store.revision
    revoked = lease_op(a, LeaseRevoke(7, expired=True))
    assert revoked.ok and revoked.revision == before + 1 == store.revision
    assert store.get("x") is None and store.get("y") is None and store.get("z") is not None
    assert 7 not in store.leases and store.leases.lease_of("x") is None
    assert store.history is not None  # watchers see both deletes, at that one revision
    changes = store.history.changes(before, 10)
    assert [(c.revision, c.kind, c.key) for c in changes] == [
        (before + 1, "delete", "x"),
        (before + 1, "delete", "y"),
    ]
    again = lease_op(a, LeaseRevoke(7))
    assert not again.ok and again.error == Outcome.LEASE_NOT_FOUND


def test_a_put_without_lease_or_a_delete_detaches_the_key(store: KeyValueStore) -> None:
    a = leased_store(store)
    assert lease_op(a, LeaseGrant(1, 10)).ok
    for key in ("kept", "deleted", "txn"):
        assert a.put(key, "v", lease=1).ok
    assert a.put("kept", "w").ok  # a put without a lease detaches, as in etcd
    assert a.delete("deleted").ok
    assert a.txn([], [TxnOp("put", "txn", "w")]).ok
    assert store.leases is not None and store.leases.keys(1, 10) == []
    assert a.put("deleted", "again").ok  # re-created: not attached any more
    rev = store.revision
    assert lease_op(a, LeaseRevoke(1)).ok
    assert store.revision == rev  # nothing attached: nothing deleted, no new revision
    assert store.get("kept") is not None and store.get("deleted") is not None


def test_refusals_change_nothing(store: KeyValueStore) -> None:
    a = Applier(store)
    before = lease_op(a, LeaseGrant(3, 10))  # before the upgrade: a foreign entry
    assert before.error == Outcome.BAD_COMMAND and store.leases is None
    assert a.put("k", "v", lease=3).error == Outcome.LEASE_NOT_FOUND and store.get("k") is None
    a = leased_store(store)
    a.index = 10
    assert a.put("k", "v", lease=3).error == Outcome.LEASE_NOT_FOUND and store.get("k") is None
    assert lease_op(a, LeaseGrant(3, 10)).ok
    taken = lease_op(a, LeaseGrant(3, 99))
    assert taken.error == Outcome.LEASE_EXISTS and store.leases is not None
    assert store.leases.ttl(3) == 10


def test_the_number_of_leases_is_bounded(store: KeyValueStore) -> None:
    a = leased_store(store)
    for lease in range(1, MAX_LEASES + 1):
        assert lease_op(a, LeaseGrant(lease, 60)).ok
    assert lease_op(a, LeaseGrant(MAX_LEASES + 1, 60)).error == Outcome.TOO_MANY_LEASES
    assert lease_op(a, LeaseRevoke(1)).ok
    assert lease_op(a, LeaseGrant(MAX_LEASES + 1, 60)).ok


def test_a_rolled_back_batch_forgets_its_grants(store: KeyValueStore) -> None:
    a = leased_store(store)
    store.commit()
    assert lease_op(a, LeaseGrant(5, 10)).ok
    store.abort()
    assert store.leases is not None and 5 not in store.leases


def test_leases_survive_reopen_and_a_snapshot_round_trip(tmp_path: Path) -> None:
    src = KeyValueStore.open(tmp_path / "a.sqlite")
    a = leased_store(src)
    assert lease_op(a, LeaseGrant(11, 20)).ok and lease_op(a, LeaseGrant(12, 40)).ok
    assert a.put("p", "1", lease=11).ok and a.put("q", "2", lease=12).ok
    src.commit()
    snap = tmp_path / "snap.sqlite"
    info = src.snapshot_to(snap)
    assert info.format_version == LEASE_FORMAT == inspect_snapshot(snap).format_version
    src.close()
    with KeyValueStore.open(tmp_path / "a.sqlite") as reopened:
        assert reopened.leases is not None and reopened.leases.granted() == {11: 20, 12: 40}
    with KeyValueStore.open(tmp_path / "b.sqlite") as dst:
        dst.restore_from(snap)
        assert dst.leases is not None and dst.leases.granted() == {11: 20, 12: 40}
        assert dst.leases.keys(11, 10) == ["p"]
        b = Applier(dst, dst.applied_index)
        assert lease_op(b, LeaseRevoke(12)).ok and dst.get("q") is None
        assert dst.get("p") is not None


def test_lease_tables_in_an_older_format_file_are_refused(tmp_path: Path) -> None:
    import sqlite3

    p = tmp_path / "kv.sqlite"
    with KeyValueStore.open(p) as s:
        a = Applier(s)
        a.put("a", "1")
        s.commit()
    conn = sqlite3.connect(p)
    conn.execute("CREATE TABLE leases (id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreFormatError, match="leases before format 4"):
        inspect_snapshot(p)
