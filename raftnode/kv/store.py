"""The key-value state machine on an on-disk, transactional store (SQLite in WAL mode).

The model is etcd's bbolt backend: the data and the Raft index it reflects are written in the
same transaction, so a restart is open-and-go. ``applied_index`` is read from the store and the
runtime replays only the log after it. Memory is bounded by SQLite's page cache
(``cache_bytes``), not by the data.

Semantics (etcd's): a global ``revision`` bumped by every successful mutation (a transaction
that writes bumps it once); per key ``create_revision``, ``mod_revision`` and ``version`` (writes
since the key's creation; a delete resets it); put, delete, compare-and-set on the value
(``cas`` with ``prev_value``, ``None`` = must be absent) and on ``mod_revision``
(``prev_revision``, 0 = must be absent); transactions (``Txn``: compares, then one list of
operations or another, atomically); listing a prefix or a key range in key order with ``limit``
and ``start_after``; an undecodable command is skipped the same way on every node
(``error="bad_command"``). Apply is deterministic: every field is a function of the log.

Life cycle, as the runtime drives it (all on the event-loop thread unless said otherwise)::

    store = KeyValueStore.open(path, max_store_bytes=..., cache_bytes=...)
    replay the log after store.applied_index
    for each batch of committed entries:
        for each entry: result = store.apply(entry.index, entry.data)   # opens a transaction
        store.commit()                  # data + applied index + revision + size, one transaction
    worker thread, now and then: store.sync()     # makes everything committed so far durable
    log compaction may discard entries up to store.durable_index(), never further
    worker thread: info = store.snapshot_to(file)  # consistent copy at the last commit()
    worker thread + loop: store.restore_from(file)  # replace the whole state (see its docstring)

Durability (``synchronous=NORMAL``, the default): a commit is atomic and survives a crash of the
process, but the last commits before a power loss may roll back (the store stays consistent, at
an earlier applied index). That is the right trade: the Raft log is fsynced already, so an fsync
per batch on the event loop would buy nothing *provided* the log still holds the entries after
the store's durable point. ``sync()`` (a worker thread, its own connection) checkpoints and
fsyncs the WAL and the database file, and ``durable_index()`` says up to which index that made
the store durable. ``synchronous="FULL"`` fsyncs every commit instead (then ``durable_index()``
equals ``applied_index``), at the price of an fsync on the loop per batch.

Reads (``get``, ``list``, ``len``, ``revision``) on the loop thread see everything applied,
including the batch not yet committed, exactly like the runtime's applied index.

Quota (etcd's ``--quota-backend-bytes``): ``max_store_bytes`` bounds the *logical* size, the sum
of the UTF-8 bytes of every key and value, tracked in the meta row so that every node decides the
same way, plus the remembered outcomes of idempotent writes (recounted from their table on
opening, so every node counts them alike). A put that would grow the logical size past the quota
fails with
``error="quota_exceeded"`` and changes nothing; deletes and puts that do not grow the store still
work. Every node must run with the same quota (it is part of the state machine's behaviour).

File format (versions 1 to 4; the live store and snapshot files share it). An SQLite 3
database with ``PRAGMA application_id = 0x72666E64`` ("rfnd") and ``PRAGMA user_version`` 1 or 2::

    kv(key BLOB PRIMARY KEY, value BLOB, create_rev INTEGER, mod_rev INTEGER
       [, version INTEGER: format 2]) WITHOUT ROWID
    meta(id INTEGER PRIMARY KEY CHECK (id = 0), applied_index, revision, key_count, logical_bytes)
    requests(id BLOB PRIMARY KEY, idx, stamp, result, fp) WITHOUT ROWID, index requests_by_idx

Format 2 adds the per-key ``version``. A store moves from 1 to 2 through the log, never on its
own: the ``FormatUpgrade`` entry (proposed once every member runs a release that applies it)
adds the column with every existing key at version 1, in the same transaction as the entries
around it. So every node counts versions from the same log position whatever release applied
the entries before it, and a format-1 snapshot (what the previous release reads and writes)
is what a cluster hands around until then. A store created fresh starts at format 1 too; before
the upgrade ``version`` reads as None. Format-1 files from the previous release open and restore
unchanged.

Format 3 adds the history window (``raftnode.kv.history``: the ``history`` and
``history_meta`` tables), the same way: the ``FormatUpgrade`` entry to 3 (proposed once every
member speaks peer protocol 5; from format 1 it adds the versions too) creates the tables with
the window starting at that revision, so every node's window is the same. Format-1 and -2
files open unchanged and keep no history until then.

Format 4 adds leases (``raftnode.kv.leases``: the ``leases`` and ``lease_keys`` tables), the
same way again (``FormatUpgrade`` to 4 once every member speaks peer protocol 6; from an older
format it adds what 2 and 3 add too). ``LeaseGrant`` adds a lease, a put with ``lease``
attaches its key (a put without one, or a delete, detaches it), and ``LeaseRevoke`` removes the
lease and deletes its keys at one revision. The tables are in the file, so in every snapshot.

Keys and values are stored as UTF-8 (``surrogatepass``, so any Python string round-trips); byte
order of UTF-8 equals code point order, so listings sort exactly as Python sorts strings. A
snapshot file is a copy of the store (SQLite's online backup, or ``VACUUM INTO`` when
compacting) in rollback-journal mode, fsynced, then renamed into place; ``SnapshotInfo.sha256``
is the SHA-256 of the whole file. Restoring is a validated copy of such a file.
``inspect_snapshot(path)`` reads a snapshot's index, revision, key count, size and checksum
without a store.

Measurements and the choice of SQLite over LMDB and the old dict: ``docs/storage.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from raftnode.kv.commands import (
    HISTORY_FORMAT,
    LEASE_FORMAT,
    REVISIONS_FORMAT,
    ApplyResult,
    Command,
    CommandResult,
    Compact,
    Compare,
    FormatUpgrade,
    KeyRevisions,
    LeaseGrant,
    LeaseRevoke,
    Outcome,
    Txn,
    TxnOp,
    TxnOpResult,
    TxnResult,
    decode_entry,
    replay_of,
)
from raftnode.kv.history import HISTORY_COLUMNS, History, HistoryLimits, compact_history
from raftnode.kv.leases import LEASE_COLUMNS, LEASE_INDEXES, LeaseTable, lease_refusal

log = logging.getLogger(__name__)

FORMAT_VERSION = LEASE_FORMAT
"""The newest store format this release reads; it also reads every older one (from 1)."""
APPLICATION_ID = 0x72666E64  # "rfnd"
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
# Safety net only: sync() checkpoints from a worker thread. If nobody calls it, the writer
# checkpoints (on the loop thread) once the WAL holds this many pages (~40 MiB at 4 KiB pages).
DEFAULT_AUTOCHECKPOINT_PAGES = 10_000

# Snapshot and sync connections stream through the data once: a small cache of their own.
_READER_CACHE_BYTES = 2 * 1024 * 1024
_SQLITE_MAGIC = b"SQLite format 3\x00"
_ENC = "utf-8"
_ERRORS = "surrogatepass"
_CHUNK = 1 << 20

_SCHEMA = (
    "CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB NOT NULL,"
    " create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 0),"
    " applied_index INTEGER NOT NULL, revision INTEGER NOT NULL,"
    " key_count INTEGER NOT NULL, logical_bytes INTEGER NOT NULL)",
    "INSERT INTO meta (id, applied_index, revision, key_count, logical_bytes)"
    " VALUES (0, 0, 0, 0, 0)",
)
_REQUESTS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS requests (id BLOB PRIMARY KEY, idx INTEGER NOT NULL,"
    " stamp REAL NOT NULL, result TEXT NOT NULL, fp BLOB) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS requests_by_idx ON requests (idx)",
)
"""Outcomes of commands that carried a request id (idempotency key), kept for
``REQUEST_RETENTION_SECONDS`` (by the commands' own stamps) and at most ``REQUEST_RETENTION_COUNT``
of them, so a retried write applies once (Raft dissertation 6.3, client sessions). ``fp`` is the
command's ``Command.fingerprint()``: the same id with another command is refused (stores made
before it existed get the column, NULL for their old rows, on opening)."""
_REQUEST_ROW_OVERHEAD = 32
"""Bytes counted per remembered outcome beside its id, result and fingerprint (index, stamp)."""
_REQUEST_ROW_BYTES = (
    f"length(id) + length(result) + COALESCE(length(fp), 0) + {_REQUEST_ROW_OVERHEAD}"
)
REQUEST_RETENTION_SECONDS = 3600.0
REQUEST_RETENTION_COUNT = 100_000
_EXPIRE_EVERY = 256


def _check_types(cmd: object) -> None:
    """Refuse a decoded command whose fields are not of their types (a foreign entry)."""
    if isinstance(cmd, Command):
        if not isinstance(cmd.key, str) or (cmd.op == "put" and not isinstance(cmd.value, str)):
            raise TypeError("key and value must be strings")
        if cmd.cas and cmd.prev_value is not None and not isinstance(cmd.prev_value, str):
            raise TypeError("prev_value must be a string or null")
    request_id = cmd.request_id if isinstance(cmd, Command | Txn) else None
    if request_id is not None and not isinstance(request_id, str):
        raise TypeError("a request id must be a string")


class StoreError(Exception):
    """The store cannot be used: I/O failure, or a file that is not a usable store."""


class StoreFormatError(StoreError):
    """A file is not a raftnode key-value store, is damaged, or has a newer format version."""


@dataclass(slots=True)
class KeyRecord:
    value: str
    create_revision: int
    mod_revision: int
    version: int | None = None
    """Writes since the key's creation (1 after it); None on a format-1 store."""

    @property
    def revisions(self) -> KeyRevisions:
        return KeyRevisions(self.create_revision, self.mod_revision, self.version)


Listing = list[tuple[str, KeyRecord]]
"""Keys with their records, in key order."""
_SqlArgs = list[Any]


def _record(
    k: bytes, v: bytes, create: int, mod: int, version: int | None
) -> tuple[str, KeyRecord]:
    return k.decode(_ENC, _ERRORS), KeyRecord(v.decode(_ENC, _ERRORS), create, mod, version)


@dataclass(frozen=True, slots=True)
class KeyRange:
    """Keys from ``low`` (inclusive) to ``high`` (exclusive; None: past the last key), as UTF-8
    bytes: etcd's ``key``/``range_end``. ``KeyRange.between("a", "c")`` is a range of keys,
    ``KeyRange.of_prefix("a/")`` every key starting with ``a/``; ``within`` intersects two.
    A range whose ``high`` is not after its ``low`` holds no key."""

    low: bytes = b""
    high: bytes | None = None

    @classmethod
    def between(cls, start: str = "", end: str | None = None) -> KeyRange:
        high = None if end is None else end.encode(_ENC, _ERRORS)
        return cls(start.encode(_ENC, _ERRORS), high)

    @classmethod
    def of_prefix(cls, prefix: str) -> KeyRange:
        pb = prefix.encode(_ENC, _ERRORS)
        return cls(pb, _prefix_upper_bound(pb))

    def within(self, other: KeyRange) -> KeyRange:
        """The keys in both ranges."""
        highs = [h for h in (self.high, other.high) if h is not None]
        return KeyRange(max(self.low, other.low), min(highs) if highs else None)


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """What a snapshot file holds, and how to recognise it."""

    applied_index: int
    revision: int
    key_count: int
    logical_bytes: int
    size_bytes: int
    sha256: str
    format_version: int = FORMAT_VERSION


# -- file helpers ------------------------------------------------------------------------------


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _hash_file(path: Path, *, fsync: bool) -> tuple[str, int]:
    """SHA-256 and size of a file, reading it once; with ``fsync``, fsyncs it on the way."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
        if fsync:
            os.fsync(f.fileno())
    return h.hexdigest(), size


def _check_header(path: Path) -> bytes:
    """The first 100 bytes of an SQLite file, or a clear error naming the file."""
    try:
        with open(path, "rb") as f:
            header = f.read(100)
    except OSError as e:
        raise StoreError(f"{path}: cannot read: {e.strerror or e}") from e
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise StoreFormatError(
            f"{path} is not a raftnode key-value store (not an SQLite database file)"
        )
    return header


def _check_identity(conn: sqlite3.Connection, path: Path) -> None:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if app_id != APPLICATION_ID:
        raise StoreFormatError(
            f"{path} is an SQLite database but not a raftnode key-value store "
            f"(application_id {app_id:#x}, expected {APPLICATION_ID:#x})"
        )
    if version > FORMAT_VERSION:
        raise StoreFormatError(
            f"{path} has store format version {version}, newer than this raftnode supports "
            f"({FORMAT_VERSION}); upgrade raftnode to open it"
        )
    if version < 1:
        raise StoreFormatError(f"{path} has an invalid store format version {version}")


def _read_meta(conn: sqlite3.Connection, path: Path) -> tuple[int, int, int, int]:
    try:
        row = conn.execute(
            "SELECT applied_index, revision, key_count, logical_bytes FROM meta WHERE id = 0"
        ).fetchone()
    except sqlite3.DatabaseError as e:
        raise StoreFormatError(f"{path}: damaged raftnode key-value store: {e}") from e
    if row is None:
        raise StoreFormatError(f"{path}: damaged raftnode key-value store: no meta row")
    if not all(isinstance(v, int) and v >= 0 for v in row):
        raise StoreFormatError(f"{path}: damaged raftnode key-value store: meta row {row!r}")
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def _init_schema(conn: sqlite3.Connection) -> None:
    """A fresh store, at format 1: it reaches 2 through the log (see the module docstring)."""
    conn.execute("BEGIN IMMEDIATE")
    for stmt in (*_SCHEMA, *_REQUESTS_SCHEMA):
        conn.execute(stmt)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute("COMMIT")


_UPGRADE_TO_REVISIONS = (
    "ALTER TABLE kv ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
    f"PRAGMA user_version = {REVISIONS_FORMAT}",
)
"""Format 1 -> 2 inside the apply transaction: O(1) (SQLite keeps the default in the schema,
so every existing key reads version 1 without a row being rewritten)."""


def _upgrade_schema(conn: sqlite3.Connection, current: int, target: int, revision: int) -> int:
    """Move the schema from format ``current`` to ``target`` (2: per-key versions; 3: the
    history window, starting after ``revision``) in the open transaction; the new format."""
    if current < REVISIONS_FORMAT:
        for stmt in _UPGRADE_TO_REVISIONS:
            conn.execute(stmt)
    if target >= HISTORY_FORMAT > current:
        History.create(conn, revision)
        conn.execute(f"PRAGMA user_version = {HISTORY_FORMAT}")
    if target >= LEASE_FORMAT > current:
        LeaseTable.create(conn)
        conn.execute(f"PRAGMA user_version = {LEASE_FORMAT}")
    log.info("store format upgraded", extra={"fields": {"format": target}})
    return target


_KV_COLUMNS = {
    1: ("key", "value", "create_rev", "mod_rev"),
    REVISIONS_FORMAT: ("key", "value", "create_rev", "mod_rev", "version"),
    HISTORY_FORMAT: ("key", "value", "create_rev", "mod_rev", "version"),
    LEASE_FORMAT: ("key", "value", "create_rev", "mod_rev", "version"),
}
"""The ``kv`` table's columns in each store format."""
_KNOWN_COLUMNS = {
    "kv": _KV_COLUMNS[1],
    "meta": ("id", "applied_index", "revision", "key_count", "logical_bytes"),
    "requests": ("id", "idx", "stamp", "result", "fp"),
    "raft_position": ("id", "idx", "term", "voters", "learners", "peers"),
    **HISTORY_COLUMNS,
    **LEASE_COLUMNS,
}
_OPTIONAL_OBJECTS = {
    ("table", "requests"),
    ("index", "requests_by_idx"),
    ("table", "raft_position"),
    *(("table", t) for t in HISTORY_COLUMNS),
    *(("table", t) for t in LEASE_COLUMNS),
    *(("index", i) for i in LEASE_INDEXES),
}
"""Stores made before idempotency keys existed have no requests; only operators' backups
(``raftnode.snapshot_file``) have a raft_position."""


def _check_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a file whose schema is not exactly raftnode's: only its known tables and index,
    with the known columns of its format version, and no triggers or views (which would run
    code of the file's author when the store is used). ``trusted_schema`` is off before
    anything is read."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.execute("PRAGMA trusted_schema = OFF")
    objects = {
        (kind, name)
        for kind, name in conn.execute("SELECT type, name FROM sqlite_schema")
        if not name.startswith("sqlite_autoindex_")
    }
    expected = {("table", t) for t in _KNOWN_COLUMNS} | _OPTIONAL_OBJECTS
    unknown = sorted(objects - expected)
    if unknown:
        named = ", ".join(f"{kind} {name}" for kind, name in unknown)
        raise StoreFormatError(f"{path}: not a raftnode key-value store: unexpected {named}")
    required = expected - _OPTIONAL_OBJECTS
    if version >= HISTORY_FORMAT:  # the history window's tables come with format 3
        required |= {("table", t) for t in HISTORY_COLUMNS}
    elif objects & {("table", t) for t in HISTORY_COLUMNS}:
        raise StoreFormatError(f"{path}: not a raftnode key-value store: history before format 3")
    lease_objects = {("table", t) for t in LEASE_COLUMNS} | {("index", i) for i in LEASE_INDEXES}
    if version >= LEASE_FORMAT:  # the lease tables come with format 4
        required |= lease_objects
    elif objects & lease_objects:
        raise StoreFormatError(f"{path}: not a raftnode key-value store: leases before format 4")
    missing = sorted(required - objects)
    if missing:
        named = ", ".join(f"{kind} {name}" for kind, name in missing)
        raise StoreFormatError(f"{path}: not a raftnode key-value store: no {named}")
    for table, known in _KNOWN_COLUMNS.items():
        if ("table", table) not in objects:
            continue
        columns = tuple(row[1] for row in conn.execute(f"PRAGMA table_info({table})"))
        allowed = {known, known[:-1]} if table == "requests" else {known}  # fp came later
        if table == "kv":
            known = _KV_COLUMNS.get(version, known)
            allowed = {known}
        if columns not in allowed:
            raise StoreFormatError(
                f"{path}: not a raftnode key-value store: table {table} has columns "
                f"{', '.join(columns)}, expected {', '.join(known)}"
            )


def _readonly_uri(path: Path, *, immutable: bool) -> str:
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    return uri + "&immutable=1" if immutable else uri


def inspect_snapshot(path: Path, *, verify: bool = False) -> SnapshotInfo:
    """Index, revision, key count, size and SHA-256 of a snapshot (or store) file.

    A pure function of the file: no store needed (backup and restore tooling use it). With
    ``verify`` it also runs SQLite's ``quick_check`` and recounts keys and bytes against the meta
    row (O(data)). Raises ``StoreFormatError`` naming the file when it is not a raftnode store,
    is damaged, or has a newer format version.
    """
    return _inspect(Path(path), verify=verify, fsync=False)


def _inspect(path: Path, *, verify: bool, fsync: bool) -> SnapshotInfo:
    header = _check_header(path)
    sha, size = _hash_file(path, fsync=fsync)
    # A live store in WAL mode (header bytes 18/19 == 2) must be read through its WAL.
    wal_mode = header[18] == 2
    try:
        conn = sqlite3.connect(
            _readonly_uri(path, immutable=not wal_mode), uri=True, isolation_level=None
        )
    except sqlite3.Error as e:
        raise StoreFormatError(f"{path}: cannot open as a raftnode key-value store: {e}") from e
    try:
        try:
            _check_identity(conn, path)
            _check_schema(conn, path)
            index, revision, count, nbytes = _read_meta(conn, path)
            file_format = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if verify:
                check = str(conn.execute("PRAGMA quick_check(3)").fetchone()[0])
                if check != "ok":
                    first = check.replace("*** in database main ***", "").strip().splitlines()
                    raise StoreFormatError(
                        f"{path}: damaged raftnode key-value store: {first[0] if first else check}"
                    )
                real_count, real_bytes = conn.execute(
                    "SELECT COUNT(*), COALESCE(SUM(length(key) + length(value)), 0) FROM kv"
                ).fetchone()
                if (real_count, real_bytes) != (count, nbytes):
                    raise StoreFormatError(
                        f"{path}: damaged raftnode key-value store: meta says {count} keys / "
                        f"{nbytes} bytes, the data holds {real_count} / {real_bytes}"
                    )
        except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
            # A damaged page can turn a text column into bytes that are not UTF-8.
            raise StoreFormatError(f"{path}: damaged raftnode key-value store: {e}") from e
    finally:
        conn.close()
    return SnapshotInfo(index, revision, count, nbytes, size, sha, file_format)


# -- the store ---------------------------------------------------------------------------------


def _prefix_upper_bound(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with ``prefix``."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return None
    p[-1] += 1
    return bytes(p)


class KeyValueStore:
    """The replicated key-value state machine, kept in an SQLite file.

    ``KeyValueStore.open(path)`` opens (or creates) the store in the file at ``path``.

    Threading: one thread at a time drives the writer (``apply``, ``commit``, ``abort``, reads,
    ``close``): the event-loop thread. ``sync``, ``durable_index``, ``snapshot_to`` and
    ``stage_restore`` are safe from worker threads while the loop keeps applying (each uses its
    own connection). ``restore_from`` replaces the files: see its docstring.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_store_bytes: int | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        autocheckpoint_pages: int = DEFAULT_AUTOCHECKPOINT_PAGES,
        max_snapshot_bytes: int | None = None,
        history: HistoryLimits | None = None,
    ) -> None:
        if max_store_bytes is not None and max_store_bytes <= 0:
            raise ValueError("max_store_bytes must be positive (or None for no quota)")
        if cache_bytes < 1024:
            raise ValueError("cache_bytes must be at least 1024")
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be 'NORMAL' or 'FULL'")
        self.path = Path(path)
        self.max_store_bytes = max_store_bytes
        self.max_snapshot_bytes = max_snapshot_bytes
        """The largest snapshot file ``stage_restore`` accepts (None: any size)."""
        self._cache_bytes = cache_bytes
        self.history_limits = history or HistoryLimits()  # the same on every node
        self._synchronous = synchronous
        self._autocheckpoint = autocheckpoint_pages
        self._sync = _Durability(lambda: self._connect(_READER_CACHE_BYTES), self.path)
        self._closed = False
        self._reading = False
        """A read-only transaction is open on the writer connection (see ``_read_view``)."""
        # A copy left by a restore that crashed before its swap is of no use.
        self._staged_path().unlink(missing_ok=True)
        self._conn = self._open_writer()
        self._load_meta()
        self.sync()

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        max_store_bytes: int | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        max_snapshot_bytes: int | None = None,
        history: HistoryLimits | None = None,
    ) -> KeyValueStore:
        """Open (or create) the store at ``path``; ready as soon as it returns."""
        return cls(
            Path(path),
            max_store_bytes=max_store_bytes,
            cache_bytes=cache_bytes,
            synchronous=synchronous,
            max_snapshot_bytes=max_snapshot_bytes,
            history=history,
        )

    # -- opening and closing ---------------------------------------------------------------

    def _connect(self, cache_bytes: int | None = None) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        cache = self._cache_bytes if cache_bytes is None else cache_bytes
        conn.execute(f"PRAGMA cache_size = {-max(1, cache // 1024)}")
        conn.execute("PRAGMA trusted_schema = OFF")
        return conn

    def _open_writer(self) -> sqlite3.Connection:
        return _open_writer(self.path, self._connect, self._synchronous, self._autocheckpoint)

    def _load_meta(self) -> None:
        for stmt in _REQUESTS_SCHEMA:  # stores made before request ids existed lack it
            self._conn.execute(stmt)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(requests)")}
        if "fp" not in columns:  # made before fingerprints: old rows keep a NULL one
            self._conn.execute("ALTER TABLE requests ADD COLUMN fp BLOB")
        self._requests = _RequestLog(
            *self._conn.execute(
                f"SELECT COUNT(*), COALESCE(SUM({_REQUEST_ROW_BYTES}), 0) FROM requests"
            ).fetchone()
        )
        index, revision, count, nbytes = _read_meta(self._conn, self.path)
        self._format = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        self.history = History.of_format(self._conn, self.history_limits, self._format)
        self.leases = LeaseTable.of_format(self._conn, self._format)
        self._applied = self._pending_index = index
        self._revision = revision
        self._key_count = count
        self._logical_bytes = nbytes

    def close(self) -> None:
        """Roll back an uncommitted batch and close every connection (checkpointing the WAL)."""
        if self._closed:
            return
        self._closed = True
        self._rollback()
        with self._sync.lock:
            self._sync.close_connection()
        self._conn.close()

    def __enter__(self) -> KeyValueStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- state -----------------------------------------------------------------------------

    @property
    def applied_index(self) -> int:
        """The highest log index whose effects the last ``commit()`` stored."""
        return self._applied

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def format_version(self) -> int:
        """The store format in force, including the uncommitted batch (1: no ``version``)."""
        return self._format

    @property
    def counts_versions(self) -> bool:
        return self._format >= REVISIONS_FORMAT

    @property
    def quota_used_bytes(self) -> int:
        """What the quota bounds: the UTF-8 bytes of every key and value, plus the remembered
        outcomes of idempotent writes (their ids, results and fingerprints)."""
        return self._logical_bytes + self._requests.nbytes

    def __len__(self) -> int:
        return self._key_count

    def disk_usage_bytes(self) -> int:
        """Bytes the store's files take (database + WAL), for a metric (any thread)."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                total += self.path.with_name(self.path.name + suffix).stat().st_size
        return total

    def durable_index(self) -> int:
        """Up to which index the store survives a power loss (any thread).

        The runtime may discard Raft log entries up to this index, never beyond it: with
        ``synchronous=NORMAL`` later commits live in the WAL, not yet fsynced.
        """
        if self._synchronous == "FULL":
            return self._applied
        with self._sync.lock:
            return self._sync.index

    # -- apply and commit ------------------------------------------------------------------

    def _begin(self) -> None:
        if self._reading:
            # A batch never grows out of the reads' transaction: it takes its own read lock,
            # so after a complete checkpoint its commit restarts the WAL instead of growing it.
            self._conn.execute("COMMIT")
            self._reading = False
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN")

    def _rollback(self) -> None:
        """Drop the open batch, or end the reads' transaction."""
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        self._reading = False

    def _read_view(self) -> None:
        """Serve reads between batches from one read transaction, begun by the first read
        after a commit and ended by the next batch (``_begin``).

        Each statement outside a transaction is a transaction of its own, which takes and
        releases the database file's shared lock: two ``fcntl`` calls per read, about half
        the system calls of a served GET. Reads see every commit: this connection is the
        store's only writer, and each batch ends the transaction before it writes.
        """
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN")
            self._reading = True

    def apply(self, index: int, data: bytes) -> ApplyResult:
        """Apply one committed entry inside the open transaction (opened lazily).

        Never commits: the runtime calls ``commit()`` once per batch.
        """
        self._begin()
        if index > self._pending_index:
            self._pending_index = index
        try:
            cmd = decode_entry(data)
            _check_types(cmd)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            # Validated before proposing, so this is a bug or a foreign entry: skip it the
            # same way on every node.
            log.error(
                "undecodable command skipped", extra={"fields": {"index": index, "error": str(e)}}
            )
            return CommandResult(ok=False, revision=self._revision, error=Outcome.BAD_COMMAND)
        if isinstance(cmd, FormatUpgrade):
            return self._upgrade_format(cmd.format)
        if isinstance(cmd, LeaseGrant | LeaseRevoke):
            return self._apply_lease(cmd)
        if isinstance(cmd, Compact):
            return compact_history(self.history, cmd.revision, self._revision)
        if cmd.request_id is None:
            return self._apply_one(cmd)
        rid = cmd.request_id.encode(_ENC, _ERRORS)
        fingerprint = cmd.fingerprint()
        earlier = self._requests.earlier(self._conn, rid, fingerprint, cmd, self._revision)
        if earlier is not None:
            return earlier
        result = self._apply_one(cmd)
        self._requests.remember(self._conn, rid, fingerprint, index, cmd.stamp, result.to_json())
        return result

    def _apply_one(self, cmd: Command | Txn) -> CommandResult | TxnResult:
        if isinstance(cmd, Txn):
            return self._apply_txn(cmd)
        return self._apply_command(cmd)

    def _upgrade_format(self, target: int) -> CommandResult:
        """``FormatUpgrade``: format 1 -> 2 (versions) -> 3 (history window) in the open
        transaction, as far as ``target``; a no-op when there."""
        if target not in (REVISIONS_FORMAT, HISTORY_FORMAT, LEASE_FORMAT):
            log.error("unknown store format upgrade skipped", extra={"fields": {"to": target}})
            return CommandResult(ok=False, revision=self._revision, error=Outcome.BAD_COMMAND)
        if self._format < target:
            self._format = _upgrade_schema(self._conn, self._format, target, self._revision)
            self.history = History.of_format(self._conn, self.history_limits, self._format)
            self.leases = LeaseTable.of_format(self._conn, self._format)
        return CommandResult(ok=True, revision=self._revision)

    def _apply_lease(self, cmd: LeaseGrant | LeaseRevoke) -> CommandResult:
        """A grant, or a revoke that deletes the lease's keys at one revision."""
        leases, rev = self.leases, self._revision
        error = Outcome.BAD_COMMAND if leases is None else lease_refusal(leases, cmd)
        if leases is None or error is not None:
            return CommandResult(ok=False, revision=rev, error=error)
        if isinstance(cmd, LeaseGrant):
            leases.grant(cmd.lease, cmd.ttl)
            return CommandResult(ok=True, revision=rev)
        for kb in leases.revoke(cmd.lease):
            row = self._row(kb)
            if row is not None:
                self._write_delete(kb, len(kb) + len(row[0]), rev + 1)
                self._revision = rev + 1
        return CommandResult(ok=True, revision=self._revision)

    def _row(self, kb: bytes) -> tuple[bytes, int, int, int | None] | None:
        """(value, create_rev, mod_rev, version) of a key, None when absent."""
        version = "version" if self.counts_versions else "NULL"
        row = self._conn.execute(
            f"SELECT value, create_rev, mod_rev, {version} FROM kv WHERE key = ?", (kb,)
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2], row[3])

    def _key_revisions(self, row: tuple[bytes, int, int, int | None] | None) -> KeyRevisions:
        if row is None:
            return KeyRevisions(0, 0, 0 if self.counts_versions else None)
        return KeyRevisions(row[1], row[2], row[3])

    def _apply_command(self, cmd: Command) -> CommandResult:
        kb = cmd.key.encode(_ENC, _ERRORS)
        row = self._row(kb)
        current_value: str | None = None
        old_size = 0
        if row is not None:
            current_value = row[0].decode(_ENC, _ERRORS)
            old_size = len(kb) + len(row[0])
        existed = row is not None
        revisions = self._key_revisions(row) if self.counts_versions else None
        if (cmd.cas and current_value != cmd.prev_value) or (
            cmd.prev_revision is not None and cmd.prev_revision != (row[2] if row else 0)
        ):
            return CommandResult(
                ok=False,
                revision=self._revision,
                current_value=current_value,
                existed=existed,
                error=Outcome.CAS_MISMATCH,
                key_revisions=revisions,
            )
        if cmd.op == "put":
            assert cmd.value is not None
            if cmd.lease is not None and (self.leases is None or cmd.lease not in self.leases):
                return CommandResult(False, self._revision, error=Outcome.LEASE_NOT_FOUND)
            vb = cmd.value.encode(_ENC, _ERRORS)
            new_bytes = self._logical_bytes - old_size + len(kb) + len(vb)
            if self._over_quota(new_bytes):
                return CommandResult(
                    ok=False,
                    revision=self._revision,
                    current_value=current_value,
                    existed=existed,
                    error=Outcome.QUOTA_EXCEEDED,
                    key_revisions=revisions,
                )
            rev = self._revision + 1
            after = self._write_put(kb, vb, row, rev, cmd.lease)
            self._revision = rev
            self._logical_bytes = new_bytes
            return CommandResult(
                ok=True,
                revision=rev,
                prev_value=current_value,
                existed=existed,
                key_revisions=after if self.counts_versions else None,
            )
        if row is None:
            return CommandResult(
                ok=False, revision=self._revision, error=Outcome.NOT_FOUND, key_revisions=revisions
            )
        self._write_delete(kb, old_size, self._revision + 1)
        self._revision += 1
        return CommandResult(
            ok=True,
            revision=self._revision,
            prev_value=current_value,
            existed=True,
            key_revisions=revisions,
        )

    def _over_quota(self, new_bytes: int) -> bool:
        """Whether growing the logical size to ``new_bytes`` would pass the quota."""
        return (
            self.max_store_bytes is not None
            and new_bytes > self._logical_bytes
            and new_bytes + self._requests.nbytes > self.max_store_bytes
        )

    def _write_put(
        self,
        kb: bytes,
        vb: bytes,
        row: tuple[bytes, int, int, int | None] | None,
        rev: int,
        lease: int | None = None,
    ) -> KeyRevisions:
        """Write a key at revision ``rev``, attached to ``lease`` (None: detached from any);
        the caller moves the revision and the size."""
        conn = self._conn
        if self.leases:  # no lease at all: no key is attached to one
            self.leases.attach(kb, lease)
        versions = self.counts_versions
        if row is not None:
            version = (row[3] or 0) + 1 if versions else None
            if versions:
                conn.execute(
                    "UPDATE kv SET value = ?, mod_rev = ?, version = ? WHERE key = ?",
                    (vb, rev, version, kb),
                )
            else:
                conn.execute("UPDATE kv SET value = ?, mod_rev = ? WHERE key = ?", (vb, rev, kb))
            after = KeyRevisions(row[1], rev, version)
        elif versions:
            conn.execute(
                "INSERT INTO kv (key, value, create_rev, mod_rev, version) VALUES (?, ?, ?, ?, 1)",
                (kb, vb, rev, rev),
            )
        else:
            conn.execute(
                "INSERT INTO kv (key, value, create_rev, mod_rev) VALUES (?, ?, ?, ?)",
                (kb, vb, rev, rev),
            )
        if row is None:
            self._key_count += 1
            after = KeyRevisions(rev, rev, 1 if versions else None)
        if self.history is not None:
            self.history.record(rev, "put", kb, vb, after.create_revision, after.version or 0)
        return after

    def _write_delete(self, kb: bytes, old_size: int, rev: int) -> None:
        self._conn.execute("DELETE FROM kv WHERE key = ?", (kb,))
        if self.leases:
            self.leases.attach(kb, None)
        if self.history is not None:
            self.history.record(rev, "delete", kb, None, 0, 0)
        self._key_count -= 1
        self._logical_bytes -= old_size

    # -- transactions ----------------------------------------------------------------------

    def _holds(self, compare: Compare, rows: _Rows) -> bool:
        row = _read_once(rows, compare.key.encode(_ENC, _ERRORS), self._row)
        return _compare_holds(compare, row[0] if row else None, self._key_revisions(row))

    def _apply_txn(self, txn: Txn) -> TxnResult:
        """Compares, then one branch, at one revision; quota refused as a whole."""
        rows: _Rows = {}  # each key's row read once, until the branch writes the key
        succeeded = all(self._holds(c, rows) for c in txn.compare)
        ops = txn.success if succeeded else txn.failure
        new_bytes = self._logical_bytes
        for op in [o for o in ops if o.op != "get"]:  # validated: one write per key per branch
            kb = op.key.encode(_ENC, _ERRORS)
            row = _read_once(rows, kb, self._row)
            new_bytes -= len(kb) + len(row[0]) if row is not None else 0
            if op.op == "put":
                assert op.value is not None
                new_bytes += len(kb) + len(op.value.encode(_ENC, _ERRORS))
        if self._over_quota(new_bytes):
            return TxnResult(succeeded, self._revision, error=Outcome.QUOTA_EXCEEDED)
        rev = self._revision + 1
        changed = False
        results = []
        for op in ops:
            results.append(self._txn_op(op, rev, rows))
            changed = changed or (op.op == "put" or (op.op == "delete" and results[-1].found))
        if changed:
            self._revision = rev
        return TxnResult(succeeded, self._revision, tuple(results))

    def _txn_op(self, op: TxnOp, rev: int, rows: _Rows) -> TxnOpResult:
        kb = op.key.encode(_ENC, _ERRORS)
        row = rows.pop(kb) if kb in rows else self._row(kb)  # popped: it may be written now
        value = row[0].decode(_ENC, _ERRORS) if row is not None else None
        if op.op == "get":
            return TxnOpResult("get", op.key, row is not None, value, self._key_revisions(row))
        if op.op == "delete":
            before = self._key_revisions(row)
            if row is not None:
                self._write_delete(kb, len(kb) + len(row[0]), rev)
            return TxnOpResult("delete", op.key, row is not None, value, before)
        assert op.value is not None
        vb = op.value.encode(_ENC, _ERRORS)
        old_size = len(kb) + len(row[0]) if row is not None else 0
        after = self._write_put(kb, vb, row, rev)
        self._logical_bytes += len(kb) + len(vb) - old_size
        return TxnOpResult("put", op.key, row is not None, value, after)

    def commit(self, applied_index: int | None = None) -> None:
        """Commit the open batch with the applied index, revision and size, in one transaction.

        ``applied_index`` records entries that did not go through ``apply`` (configuration
        changes, empty entries); by default it is the highest index given to ``apply``.
        """
        if applied_index is not None and applied_index > self._pending_index:
            self._pending_index = applied_index
        if self._pending_index == self._applied and (
            self._reading or not self._conn.in_transaction
        ):
            return
        self._begin()
        self._conn.execute(
            "UPDATE meta SET applied_index = ?, revision = ?, key_count = ?, logical_bytes = ?"
            " WHERE id = 0",
            (self._pending_index, self._revision, self._key_count, self._logical_bytes),
        )
        self._conn.execute("COMMIT")
        self._applied = self._pending_index

    def abort(self) -> None:
        """Drop the uncommitted batch (after a failed apply): back to the last commit."""
        self._rollback()
        self._load_meta()

    def would_exceed_quota(self, cmd: Command) -> bool:
        """Whether ``cmd`` would fail with ``quota_exceeded`` now (a pre-check before proposing)."""
        if self.max_store_bytes is None or cmd.op != "put" or not isinstance(cmd.value, str):
            return False
        kb = cmd.key.encode(_ENC, _ERRORS)
        added = len(kb) + len(cmd.value.encode(_ENC, _ERRORS))
        if not self._over_quota(self._logical_bytes + added):
            # Within the quota even if the key is new: the size of the value it replaces
            # (a query per write) only matters near the quota.
            return False
        row = self._conn.execute("SELECT length(value) FROM kv WHERE key = ?", (kb,)).fetchone()
        old = len(kb) + row[0] if row is not None else 0
        return self._over_quota(self._logical_bytes - old + added)

    # -- reads -----------------------------------------------------------------------------

    def get(self, key: str) -> KeyRecord | None:
        self._read_view()
        row = self._row(key.encode(_ENC, _ERRORS))
        if row is None:
            return None
        return KeyRecord(row[0].decode(_ENC, _ERRORS), row[1], row[2], row[3])

    def list(
        self,
        prefix: str = "",
        limit: int | None = None,
        start_after: str | None = None,
        *,
        key_range: KeyRange | None = None,
    ) -> Listing:
        """Keys starting with ``prefix`` (or in ``key_range``) in sorted order, at most
        ``limit`` of them. ``start_after`` lists only keys after it: paging."""
        if limit is not None and limit <= 0:
            return []
        selected = key_range or KeyRange.of_prefix(prefix)
        self._read_view()
        return [_record(*row) for row in self._range_rows(selected, limit, start_after)]

    def page(
        self,
        prefix: str,
        limit: int,
        max_bytes: int,
        start_after: str | None = None,
        *,
        key_range: KeyRange | None = None,
    ) -> tuple[Listing, bool]:
        """Like ``list``, but also stops before the keys and values pass ``max_bytes`` (the
        first key always fits, so paging advances); True when more keys follow.

        Rows are read one at a time from SQLite: a page never holds more than it answers.
        """
        items: Listing = []
        size = 0
        selected = key_range or KeyRange.of_prefix(prefix)
        self._read_view()
        for row in self._range_rows(selected, limit + 1, start_after):
            size += len(row[0]) + len(row[1])
            if len(items) == limit or (items and size > max_bytes):
                return items, True
            items.append(_record(*row))
        return items, False

    def count(self, key_range: KeyRange, start_after: str | None = None) -> int:
        """How many keys ``key_range`` holds (after ``start_after``): O(keys counted), read
        from the key index only."""
        where, args = _range_where(key_range, start_after)
        self._read_view()
        return int(self._conn.execute(f"SELECT COUNT(*) FROM kv WHERE {where}", args).fetchone()[0])

    def _range_rows(
        self, key_range: KeyRange, limit: int | None, start_after: str | None
    ) -> sqlite3.Cursor:
        where, args = _range_where(key_range, start_after)
        version = "version" if self.counts_versions else "NULL"
        sql = (
            f"SELECT key, value, create_rev, mod_rev, {version} FROM kv WHERE {where}"
            " ORDER BY key LIMIT ?"
        )
        args.append(-1 if limit is None else limit)
        return self._conn.execute(sql, args)

    # -- durability (worker thread) --------------------------------------------------------

    def sync(self) -> int:
        """Make everything committed so far durable; returns the new ``durable_index()``.

        Safe from a worker thread while the loop applies and commits: it uses its own
        connection, reads the committed applied index, runs a passive WAL checkpoint (never
        blocks the writer) and fsyncs the WAL and the database file. Every commit that preceded
        the read is in those files, so it is durable once the fsyncs return.
        """
        with self._sync.lock:
            return self._sync.index if self._closed else self._sync.sync_locked()

    # -- snapshots -------------------------------------------------------------------------

    def snapshot_to(self, dest: Path, *, compact: bool = False) -> SnapshotInfo:
        """Write a consistent snapshot of the last ``commit()`` to ``dest`` (a worker thread).

        Runs on its own read connection: a WAL read transaction sees a stable view while the
        loop keeps applying and committing. By default SQLite's online backup copies the pages
        in one step (about 4x faster than ``compact``); ``compact=True`` uses ``VACUUM INTO``,
        which rebuilds the b-trees and leaves free pages out (smaller after many deletes). The
        file is written beside ``dest`` in rollback-journal mode, fsynced while its SHA-256 is
        computed, then renamed over ``dest``.
        """
        src = self._connect(_READER_CACHE_BYTES)
        try:
            return _write_snapshot(src, self.path, Path(dest), compact=compact)
        finally:
            src.close()

    def _staged_path(self) -> Path:
        return self.path.with_name(self.path.name + ".restore")

    def stage_restore(self, src: Path, *, expect_sha256: str | None = None) -> SnapshotInfo:
        """Copy and validate a snapshot file beside the store (a worker thread; O(data)).

        The loop keeps serving the old state meanwhile; ``finish_restore`` then swaps it in.
        ``expect_sha256`` (e.g. ``SnapshotInfo.sha256`` from the sender) must match the file.
        """
        return _stage_copy(Path(src), self._staged_path(), self.max_snapshot_bytes, expect_sha256)

    def restore_from(self, src: Path, *, expect_sha256: str | None = None) -> None:
        """Replace the whole state with a snapshot file's, atomically.

        ``stage_restore(src)`` (validated copy beside the store, fsynced), then
        ``finish_restore()`` (close, rename the copy over the store, reopen). Nothing else may
        use the store meanwhile. To keep the O(data) part off the loop, the runtime can call
        ``stage_restore`` in a worker thread and ``finish_restore`` on the loop. After a crash
        mid-restore the store is either wholly the old state or wholly the new one; the runtime
        tells which from ``applied_index`` (and restores again if it is the old one).
        """
        self.stage_restore(src, expect_sha256=expect_sha256)
        self.finish_restore()

    def finish_restore(self) -> None:
        """Swap in the copy ``stage_restore`` prepared (drops any uncommitted batch)."""
        staged = self._staged_path()
        if not staged.exists():
            raise StoreError(f"{staged}: no staged snapshot to restore (call stage_restore)")
        self._swap_in(staged)

    def _swap_in(self, staged: Path) -> None:
        self._rollback()
        with self._sync.lock:
            self._sync.close_connection()
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            self._conn.close()
            for suffix in ("-wal", "-shm"):
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
            os.replace(staged, self.path)
            _fsync_path(self.path.parent, directory=True)
            # Reopen under the lock: a concurrent sync() must not open the files in between.
            self._sync.index = 0
            self._conn = self._open_writer()
            self._load_meta()
            self._sync.sync_locked()


def _write_snapshot(
    src: sqlite3.Connection, store: Path, dest: Path, *, compact: bool
) -> SnapshotInfo:
    """``KeyValueStore.snapshot_to``'s copy: from the read connection ``src`` to ``dest``."""
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        if compact:
            src.execute("VACUUM INTO ?", (str(tmp),))
        else:
            out = sqlite3.connect(tmp, isolation_level=None)
            try:
                src.backup(out)  # all pages in one step: one read transaction
                # The copy carries the source's WAL flag; a snapshot is a plain file.
                out.execute("PRAGMA journal_mode = DELETE").fetchone()
            finally:
                out.close()
    except sqlite3.Error as e:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"{store}: snapshot to {dest} failed: {e}") from e
    info = _inspect(tmp, verify=False, fsync=True)
    os.replace(tmp, dest)
    _fsync_path(dest.parent, directory=True)
    return info


def _stage_copy(
    src: Path, staged: Path, max_bytes: int | None, expect_sha256: str | None
) -> SnapshotInfo:
    """``KeyValueStore.stage_restore``'s copy of ``src`` to ``staged``, validated and fsynced."""
    _check_header(src)
    size = src.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise StoreFormatError(
            f"{src}: cannot restore from this snapshot: it is {size} bytes, over the "
            f"{max_bytes} bytes accepted (limits.max_snapshot_bytes)"
        )
    try:
        shutil.copyfile(src, staged)
        # A copy of a live WAL-mode file must not look for a WAL beside it: switch the
        # staged copy to rollback-journal mode (a no-op for snapshot_to's files).
        conn = sqlite3.connect(staged, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = DELETE").fetchone()
        finally:
            conn.close()
        info = _inspect(staged, verify=True, fsync=True)
        if expect_sha256 is not None and info.sha256 != expect_sha256:
            raise StoreFormatError(
                f"checksum mismatch: sha256 {info.sha256}, expected {expect_sha256}"
            )
        return info
    except (StoreError, sqlite3.Error) as e:
        staged.unlink(missing_ok=True)
        msg = str(e).replace(str(staged), "the copy")
        raise StoreFormatError(f"{src}: cannot restore from this snapshot: {msg}") from e
    except BaseException:
        staged.unlink(missing_ok=True)
        raise


_Row = tuple[bytes, int, int, int | None]
"""A key's (value, create_rev, mod_rev, version), as ``KeyValueStore._row`` reads it."""
_Rows = dict[bytes, _Row | None]
"""Rows one transaction read already (None: the key is absent), by key."""


def _read_once(rows: _Rows, kb: bytes, read: Callable[[bytes], _Row | None]) -> _Row | None:
    """``kb``'s row from ``rows``, read with ``read`` (and kept) the first time."""
    if kb not in rows:
        rows[kb] = read(kb)
    return rows[kb]


def _compare_holds(compare: Compare, value: bytes | None, revisions: KeyRevisions) -> bool:
    """Whether one txn compare holds for a key whose value is ``value`` (None: absent)."""
    if compare.target == "exists":
        exists = value is not None
        return exists == compare.value if compare.op == "equal" else exists != compare.value
    have: bytes | int
    want: bytes | int
    if compare.target == "value":
        if value is None:
            return False  # as in etcd: a value compare on an absent key never holds
        have, want = value, str(compare.value).encode(_ENC, _ERRORS)
    else:
        have = {
            "mod_revision": revisions.mod_revision,
            "create_revision": revisions.create_revision,
            "version": revisions.version or 0,
        }[compare.target]
        assert isinstance(compare.value, int)
        want = compare.value
    if compare.op == "equal":
        return have == want
    if compare.op == "not_equal":
        return have != want
    if compare.op == "less":
        return have < want  # type: ignore[operator]
    return have > want  # type: ignore[operator]


def _range_where(key_range: KeyRange, start_after: str | None) -> tuple[str, _SqlArgs]:
    """The SQL condition (and its arguments) selecting ``key_range`` after ``start_after``."""
    sql = "key >= ?"
    args: _SqlArgs = [key_range.low]
    if start_after is not None:
        sql += " AND key > ?"
        args.append(start_after.encode(_ENC, _ERRORS))
    if key_range.high is not None:
        sql += " AND key < ?"
        args.append(key_range.high)
    return sql, args


def _open_writer(
    path: Path, connect: Callable[[], sqlite3.Connection], synchronous: str, autocheckpoint: int
) -> sqlite3.Connection:
    """The store's writer connection: the file checked (or created), WAL mode, its pragmas."""
    fresh = not path.exists() or path.stat().st_size == 0
    if not fresh:
        _check_header(path)
    elif not path.parent.is_dir():
        raise StoreError(f"{path}: directory {path.parent} does not exist")
    try:
        conn = connect()
    except sqlite3.Error as e:
        raise StoreError(f"{path}: cannot open the key-value store: {e}") from e
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"{path}: cannot switch the store to WAL mode (got {mode})")
        # NORMAL: see the module docstring (durability comes from sync()/durable_index()).
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {autocheckpoint}")
        has_tables = conn.execute("SELECT COUNT(*) FROM sqlite_schema").fetchone()[0]
        if fresh or (has_tables == 0 and conn.execute("PRAGMA application_id").fetchone()[0] == 0):
            _init_schema(conn)
            _fsync_path(path.parent, directory=True)
        else:
            _check_identity(conn, path)
    except sqlite3.DatabaseError as e:
        conn.close()
        raise StoreFormatError(f"{path}: not a usable raftnode key-value store: {e}") from e
    except BaseException:
        conn.close()
        raise
    return conn


class _Durability:
    """``KeyValueStore.sync``'s state: its own read connection, made on first use, and the
    index it last made durable. Callers hold ``lock``."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], path: Path) -> None:
        self.lock = threading.Lock()
        self.index = 0
        self._connect = connect
        self._path = path
        self._conn: sqlite3.Connection | None = None

    def close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def sync_locked(self) -> int:
        """Checkpoint (passive: never blocks the writer) and fsync the database file, and the
        WAL too when the checkpoint left frames in it; every commit before the applied index
        read first is then durable.

        After a complete checkpoint the WAL is not fsynced: every frame is in the database
        file, and the writer restarts the WAL with its next commit, syncing the new header
        itself. An fsync of the WAL from here would race that restart, and the writer's
        commit, on the event loop, would wait for this thread's writeback (tens of ms).
        """
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        index = int(conn.execute("SELECT applied_index FROM meta WHERE id = 0").fetchone()[0])
        busy, wal_frames, checkpointed = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if busy or checkpointed != wal_frames:
            wal = self._path.with_name(self._path.name + "-wal")
            with contextlib.suppress(FileNotFoundError):
                _fsync_path(wal)
        _fsync_path(self._path)
        self.index = max(self.index, index)
        return self.index


class _RequestLog:
    """The ``requests`` table's bookkeeping: the remembered outcomes of keyed writes (for
    replays), bounded by count and age; ``nbytes`` counts towards the store's quota."""

    def __init__(self, count: int, nbytes: int) -> None:
        self.count = count
        self.nbytes = nbytes

    def remember(
        self,
        conn: sqlite3.Connection,
        rid: bytes,
        fingerprint: bytes,
        index: int,
        stamp: float,
        outcome: str,
    ) -> None:
        """Keep a request id's outcome; forget the oldest past the count, and (every
        ``_EXPIRE_EVERY`` entries, by the commands' stamps) those past the retention time."""
        conn.execute(
            "INSERT INTO requests (id, idx, stamp, result, fp) VALUES (?, ?, ?, ?, ?)",
            (rid, index, stamp, outcome, fingerprint),
        )
        self.count += 1
        self.nbytes += len(rid) + len(outcome) + len(fingerprint) + _REQUEST_ROW_OVERHEAD
        if self.count > REQUEST_RETENTION_COUNT:
            excess = self.count - REQUEST_RETENTION_COUNT
            self._forget(conn, "id IN (SELECT id FROM requests ORDER BY idx LIMIT ?)", (excess,))
        if index % _EXPIRE_EVERY == 0:
            self._forget(conn, "stamp < ?", (stamp - REQUEST_RETENTION_SECONDS,))

    def earlier(
        self, conn: sqlite3.Connection, rid: bytes, fingerprint: bytes, cmd: Command | Txn, rev: int
    ) -> ApplyResult | None:
        """The first outcome of a request id seen before (replayed), a refusal when it named
        a different command then, or None when it is new."""
        row = conn.execute("SELECT result, fp FROM requests WHERE id = ?", (rid,)).fetchone()
        if row is None:
            return None
        if row[1] is not None and row[1] != fingerprint:
            if isinstance(cmd, Txn):
                return TxnResult(False, rev, error=Outcome.IDEMPOTENCY_KEY_REUSED)
            return CommandResult(ok=False, revision=rev, error=Outcome.IDEMPOTENCY_KEY_REUSED)
        return replay_of(row[0])

    def _forget(self, conn: sqlite3.Connection, where: str, args: tuple[object, ...]) -> None:
        freed = conn.execute(
            f"DELETE FROM requests WHERE {where} RETURNING {_REQUEST_ROW_BYTES}", args
        ).fetchall()
        self.count -= len(freed)
        self.nbytes -= sum(n for (n,) in freed)
