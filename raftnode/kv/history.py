"""The store's history window: the changes of the last revisions, for watches.

Every change (a put or a delete of one key) is written to the ``history`` table in the same
apply transaction as the change itself, so the window is a function of the log: every node
that applied the same entries with the same settings holds the same rows. The window is
bounded by revision count (``max_revisions``) and bytes (``max_bytes``: keys, values and
``ROW_OVERHEAD`` per change); it is compacted as it is written, the oldest revisions first,
never the revision being written. The count bound drops a 64th of the window at a time, so the
window holds the last ``max_revisions - max_revisions // 64`` to ``max_revisions`` revisions.
``compact_revision`` (in ``history_meta``) is the highest revision no longer held: a watch may
start at ``compact_revision + 1`` or later.

The tables exist from store format 3 (``raftnode.kv.commands.HISTORY_FORMAT``), created by the
``FormatUpgrade`` entry at one log position with ``compact_revision`` = the revision there, so
every node starts its window at the same point::

    history(rev, seq, key, event, value, create_rev, mod_rev, version) WITHOUT ROWID
    history_meta(id = 0, compact_rev)

Its row and byte counts are recounted on opening (O(window)), so only ``compact_rev`` is kept.

An operator may also compact on command (etcd's Compact): the ``Compact`` entry, applied by
``compact_history`` in the same deterministic way on every node, drops the changes up to a
revision at most the store's own. It uses the same tables, so it needs no new store format (only
a peer protocol version, ``COMPACT_PROTOCOL_VERSION``, since an older release cannot apply it).
Such a compaction may drop the whole window (up to ``max_bytes``) at once: it moves
``compact_rev`` at once, but deletes the rows in steps of ``PURGE_STEP_ROWS``, one step in its
own apply and one in each later revision's, so no apply holds the event loop for a time that
grows with the window. Rows at or below ``compact_rev`` are never read (``changes`` starts after
it), and which ones are left is a function of the log like the rest.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Literal

from raftnode.kv.commands import HISTORY_FORMAT, CompactResult, Outcome

PURGE_STEP_ROWS = 128
"""Rows a compaction on command deletes per apply (see above)."""
ROW_OVERHEAD = 40
"""Bytes counted per change beside its key and value (revisions, event, row framing)."""

HISTORY_SCHEMA = (
    "CREATE TABLE history (rev INTEGER NOT NULL, seq INTEGER NOT NULL, key BLOB NOT NULL,"
    " event TEXT NOT NULL, value BLOB, create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL,"
    " version INTEGER NOT NULL, PRIMARY KEY (rev, seq)) WITHOUT ROWID",
    "CREATE TABLE history_meta (id INTEGER PRIMARY KEY CHECK (id = 0),"
    " compact_rev INTEGER NOT NULL)",
)
HISTORY_COLUMNS = {
    "history": ("rev", "seq", "key", "event", "value", "create_rev", "mod_rev", "version"),
    "history_meta": ("id", "compact_rev"),
}
_ROW_BYTES = f"length(key) + COALESCE(length(value), 0) + {ROW_OVERHEAD}"
_ENC = "utf-8"
_ERRORS = "surrogatepass"

EventKind = Literal["put", "delete"]


@dataclass(frozen=True, slots=True)
class Change:
    """One change of one key at ``revision`` (a txn's changes share it, in ``seq`` order).
    A delete has no value, ``create_revision`` and ``version`` 0, ``mod_revision`` its own."""

    revision: int
    kind: EventKind
    key: str
    value: str | None
    create_revision: int
    mod_revision: int
    version: int


@dataclass(frozen=True, slots=True)
class HistoryLimits:
    max_revisions: int = 10_000
    max_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_revisions < 1 or self.max_bytes < 1:
            raise ValueError("history.max_revisions and history.max_bytes must be positive")


class History:
    """The ``history`` table's bookkeeping on the store's writer connection (loop thread)."""

    def __init__(self, conn: sqlite3.Connection, limits: HistoryLimits) -> None:
        self._conn = conn
        self.limits = limits
        row = conn.execute("SELECT compact_rev FROM history_meta WHERE id = 0").fetchone()
        self.compact_revision = int(row[0]) if row is not None else 0
        rows, nbytes = conn.execute(
            f"SELECT COUNT(*), COALESCE(SUM({_ROW_BYTES}), 0) FROM history"
        ).fetchone()
        self.rows, self.nbytes = int(rows), int(nbytes)
        self._seq = 0
        self._seq_rev = 0
        self._purged = False
        """No row at or below ``compact_revision`` is left (False: not known yet)."""

    @classmethod
    def of_format(
        cls, conn: sqlite3.Connection, limits: HistoryLimits, store_format: int
    ) -> History | None:
        """The window of a store at ``store_format``: None before format 3 (no history)."""
        return cls(conn, limits) if store_format >= HISTORY_FORMAT else None

    @staticmethod
    def create(conn: sqlite3.Connection, revision: int) -> None:
        """Add the tables inside the open transaction: a window that starts after
        ``revision``."""
        for stmt in HISTORY_SCHEMA:
            conn.execute(stmt)
        conn.execute("INSERT INTO history_meta (id, compact_rev) VALUES (0, ?)", (revision,))

    def record(
        self,
        revision: int,
        kind: EventKind,
        kb: bytes,
        vb: bytes | None,
        create: int,
        version: int,
    ) -> None:
        """Write one change at ``revision`` (in the open transaction), then compact."""
        if revision != self._seq_rev:
            self._seq_rev, self._seq = revision, 0
            self._purge_step()
        else:
            self._seq += 1
        self._conn.execute(
            "INSERT INTO history (rev, seq, key, event, value, create_rev, mod_rev, version)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (revision, self._seq, kb, kind, vb, create, revision, version),
        )
        self.rows += 1
        self.nbytes += len(kb) + (len(vb) if vb is not None else 0) + ROW_OVERHEAD
        self._compact(revision)

    def _compact(self, revision: int) -> None:
        """Drop the oldest revisions past either bound; never ``revision`` itself."""
        floor = revision - self.limits.max_revisions
        if floor > self.compact_revision:
            # Drop a 64th of the window ahead, so the DELETE and the meta update run once
            # per that many writes instead of on each (a window under 64 stays exact).
            self._drop_through(min(floor + self.limits.max_revisions // 64, revision - 1))
        while self.nbytes > self.limits.max_bytes and self.compact_revision < revision - 1:
            oldest = self._conn.execute("SELECT MIN(rev) FROM history").fetchone()[0]
            if oldest is None or oldest >= revision:
                break
            self._drop_through(int(oldest))

    def _drop_through(self, upto: int) -> None:
        freed = self._conn.execute(
            f"DELETE FROM history WHERE rev <= ? RETURNING {_ROW_BYTES}", (upto,)
        ).fetchall()
        self.rows -= len(freed)
        self.nbytes -= sum(n for (n,) in freed)
        self.compact_revision = max(self.compact_revision, upto)
        self._conn.execute(
            "UPDATE history_meta SET compact_rev = ? WHERE id = 0", (self.compact_revision,)
        )

    def compact_to(self, upto: int) -> bool:
        """Drop every change up to ``upto`` (in the open transaction); False when the window
        starts past it already (nothing to do)."""
        if upto <= self.compact_revision:
            return False
        self.compact_revision = upto
        self._conn.execute("UPDATE history_meta SET compact_rev = ? WHERE id = 0", (upto,))
        self._purged = False
        self._purge_step()
        return True

    def _purge_step(self) -> None:
        """Delete up to ``PURGE_STEP_ROWS`` of the oldest rows left at or below the compact
        revision (by a compaction on command)."""
        if self._purged:
            return
        freed = self._conn.execute(
            f"DELETE FROM history WHERE (rev, seq) IN (SELECT rev, seq FROM history"
            f" WHERE rev <= ? ORDER BY rev, seq LIMIT ?) RETURNING {_ROW_BYTES}",
            (self.compact_revision, PURGE_STEP_ROWS),
        ).fetchall()
        self.rows -= len(freed)
        self.nbytes -= sum(n for (n,) in freed)
        self._purged = len(freed) < PURGE_STEP_ROWS

    def changes(self, after: int, limit: int) -> list[Change]:
        """Up to ``limit`` changes after revision ``after``, in revision order (a revision's
        changes are never split: the last one may run past ``limit``)."""
        rows = self._conn.execute(
            "SELECT rev, event, key, value, create_rev, mod_rev, version FROM history"
            " WHERE rev > ? ORDER BY rev, seq LIMIT ?",
            (max(after, self.compact_revision), limit),
        ).fetchall()
        if len(rows) == limit:
            last = rows[-1][0]
            rows += self._conn.execute(
                "SELECT rev, event, key, value, create_rev, mod_rev, version FROM history"
                " WHERE rev = ? ORDER BY seq LIMIT -1 OFFSET ?",
                (last, sum(1 for r in rows if r[0] == last)),
            ).fetchall()
        return [
            Change(
                rev,
                event,
                key.decode(_ENC, _ERRORS),
                None if value is None else value.decode(_ENC, _ERRORS),
                create,
                mod,
                version,
            )
            for rev, event, key, value, create, mod, version in rows
        ]


def compact_history(history: History | None, upto: int, revision: int) -> CompactResult:
    """Apply a ``Compact`` entry to the window of a store at ``revision``: deterministic, so
    every node drops the same rows. Refused (nothing changed) when the store keeps no history
    or has not reached ``upto``; a no-op when the window already starts past ``upto``."""
    if history is None:
        return CompactResult(revision, 0, error=Outcome.NO_HISTORY)
    if upto > revision:
        return CompactResult(revision, history.compact_revision, error=Outcome.FUTURE_REVISION)
    compacted = history.compact_to(upto)
    return CompactResult(revision, history.compact_revision, compacted)
