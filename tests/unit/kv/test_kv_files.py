"""A file that is not a raftnode store, is damaged, or is newer gets a clear error naming it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from raftnode.kv import store as store_mod
from raftnode.kv.commands import Command
from raftnode.kv.store import KeyValueStore, StoreError, StoreFormatError, inspect_snapshot
from tests.unit.kv.conftest import Applier


def test_a_text_file_is_not_a_store(tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_text("hello, this is not a database\n" * 10)
    with pytest.raises(StoreFormatError, match=r"notes\.txt is not a raftnode key-value store"):
        KeyValueStore.open(p)
    with pytest.raises(StoreFormatError, match=r"notes\.txt"):
        inspect_snapshot(p)
    assert p.read_text().startswith("hello")  # untouched


def test_a_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "app.db"
    conn = sqlite3.connect(p)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreFormatError, match=r"app\.db is an SQLite database but not a raftnode"):
        KeyValueStore.open(p)
    with pytest.raises(StoreFormatError, match=r"app\.db"):
        inspect_snapshot(p)


def test_a_newer_format_version_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "kv.sqlite"
    with KeyValueStore.open(p) as s:
        Applier(s).put("a", "1")
        s.commit()
    conn = sqlite3.connect(p)
    conn.execute(f"PRAGMA user_version = {store_mod.FORMAT_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreFormatError, match=r"kv\.sqlite has store format version 5, newer"):
        KeyValueStore.open(p)


def test_a_damaged_store_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "kv.sqlite"
    with KeyValueStore.open(p) as s:
        a = Applier(s)
        for i in range(500):
            a.put(f"k{i}", "v" * 100)
        s.commit()
    raw = bytearray(p.read_bytes())
    raw[4096 : 4096 * 3] = b"\x13" * 8192  # wreck the first pages after the header page
    p.write_bytes(bytes(raw))
    with pytest.raises(StoreFormatError, match=r"kv\.sqlite"):
        inspect_snapshot(p, verify=True)
    with pytest.raises(StoreError, match=r"kv\.sqlite"):
        s2 = KeyValueStore.open(p)
        s2.list("")
        s2.close()


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        KeyValueStore.open(tmp_path / "nope" / "kv.sqlite")


def test_an_empty_file_becomes_a_new_store(tmp_path: Path) -> None:
    p = tmp_path / "kv.sqlite"
    p.touch()
    with KeyValueStore.open(p) as s:
        assert s.applied_index == 0 and len(s) == 0
    assert inspect_snapshot(p).applied_index == 0


@pytest.mark.parametrize(
    ("statement", "why"),
    [
        (
            "CREATE TRIGGER evil AFTER INSERT ON kv BEGIN DELETE FROM kv; END",
            "unexpected trigger evil",
        ),
        ("CREATE VIEW peek AS SELECT key FROM kv", "unexpected view peek"),
        ("CREATE TABLE extra (x)", "unexpected table extra"),
        ("CREATE INDEX by_value ON kv (value)", "unexpected index by_value"),
        ("ALTER TABLE kv ADD COLUMN note TEXT", "table kv has columns"),
        ("DROP TABLE meta", "no table meta"),
    ],
)
def test_only_raftnodes_own_schema_is_restored(tmp_path: Path, statement: str, why: str) -> None:
    s = KeyValueStore.open(tmp_path / "kv.sqlite")
    s.apply(1, Command("put", "k", "v").encode())
    s.commit()
    snap = tmp_path / "snap.sqlite"
    s.snapshot_to(snap)
    conn = sqlite3.connect(snap)
    conn.execute(statement)
    conn.commit()
    conn.close()
    with pytest.raises(StoreFormatError, match=why):
        s.restore_from(snap)
    record = s.get("k")
    assert record is not None and record.value == "v"  # nothing changed
    s.close()


def test_a_snapshot_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    s = KeyValueStore.open(tmp_path / "kv.sqlite", max_snapshot_bytes=64 * 1024)
    for i in range(100):
        s.apply(i + 1, Command("put", f"k{i}", "v" * 1000).encode())
    s.commit()
    snap = tmp_path / "snap.sqlite"
    s.snapshot_to(snap)
    with pytest.raises(StoreFormatError, match="max_snapshot_bytes"):
        s.restore_from(snap)
    s.close()
