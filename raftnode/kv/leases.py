"""The replicated half of leases: which leases exist, their granted TTL, and the keys attached.

etcd's lessor is the model, split in two: this table is part of the state machine (changed only
by log entries, identical on every node, in the store's file and so in every snapshot), while
*when* a lease expires is decided by the leader alone in monotonic time
(``raftnode.kv.lessor``), which then proposes a ``LeaseRevoke`` like any other write.

The tables exist from store format 4 (``raftnode.kv.commands.LEASE_FORMAT``), created by the
``FormatUpgrade`` entry at one log position, like the history window::

    leases(id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL)
    lease_keys(key BLOB PRIMARY KEY, lease INTEGER NOT NULL) WITHOUT ROWID,
        index lease_keys_by_lease(lease, key)

A key is attached to at most one lease. The lease ids and TTLs are mirrored in memory (bounded
by ``MAX_LEASES``), so the leader's expiry sweep never reads the file.
"""

from __future__ import annotations

import sqlite3

from raftnode.kv.commands import LEASE_FORMAT, LeaseGrant, LeaseRevoke, Outcome

MAX_LEASES = 10_000
"""Leases a store holds at most: a grant past it fails (the same on every node)."""

LEASE_SCHEMA = (
    "CREATE TABLE leases (id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL)",
    "CREATE TABLE lease_keys (key BLOB PRIMARY KEY, lease INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE INDEX lease_keys_by_lease ON lease_keys (lease, key)",
)
LEASE_COLUMNS = {
    "leases": ("id", "ttl"),
    "lease_keys": ("key", "lease"),
}
LEASE_INDEXES = ("lease_keys_by_lease",)
_ENC = "utf-8"
_ERRORS = "surrogatepass"


class LeaseTable:
    """The lease tables on the store's writer connection (loop thread), inside its open
    transaction: whatever the store rolls back, this is reloaded with it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._ttl: dict[int, int] = {
            int(i): int(t) for i, t in conn.execute("SELECT id, ttl FROM leases")
        }

    @classmethod
    def of_format(cls, conn: sqlite3.Connection, store_format: int) -> LeaseTable | None:
        """The leases of a store at ``store_format``: None before format 4 (no leases)."""
        return cls(conn) if store_format >= LEASE_FORMAT else None

    @staticmethod
    def create(conn: sqlite3.Connection) -> None:
        """Add the (empty) tables inside the open transaction."""
        for stmt in LEASE_SCHEMA:
            conn.execute(stmt)

    # -- reads -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ttl)

    def __contains__(self, lease: int) -> bool:
        return lease in self._ttl

    def ttl(self, lease: int) -> int | None:
        """The granted TTL in seconds; None when there is no such lease."""
        return self._ttl.get(lease)

    def granted(self) -> dict[int, int]:
        """Every lease and its granted TTL (a copy)."""
        return dict(self._ttl)

    def keys(self, lease: int, limit: int) -> list[str]:
        """Up to ``limit`` keys attached to ``lease``, in key order."""
        rows = self._conn.execute(
            "SELECT key FROM lease_keys WHERE lease = ? ORDER BY key LIMIT ?", (lease, limit)
        )
        return [kb.decode(_ENC, _ERRORS) for (kb,) in rows]

    def key_count(self, lease: int) -> int:
        row = self._conn.execute("SELECT COUNT(*) FROM lease_keys WHERE lease = ?", (lease,))
        return int(row.fetchone()[0])

    def lease_of(self, key: str) -> int | None:
        """The lease ``key`` is attached to, if any."""
        if not self._ttl:
            return None  # no lease, so nothing attached (revoking detaches): skip the query
        row = self._conn.execute(
            "SELECT lease FROM lease_keys WHERE key = ?", (key.encode(_ENC, _ERRORS),)
        ).fetchone()
        return None if row is None else int(row[0])

    # -- changes (applying log entries) ----------------------------------------------------

    def grant(self, lease: int, ttl: int) -> None:
        """Create ``lease`` (the caller checked that it is new and that there is room)."""
        self._conn.execute("INSERT INTO leases (id, ttl) VALUES (?, ?)", (lease, ttl))
        self._ttl[lease] = ttl

    def revoke(self, lease: int) -> list[bytes]:
        """Remove ``lease`` and its attachments; the keys that were attached, in key order
        (the caller deletes them)."""
        kbs = [
            kb
            for (kb,) in self._conn.execute(
                "SELECT key FROM lease_keys WHERE lease = ? ORDER BY key", (lease,)
            )
        ]
        self._conn.execute("DELETE FROM lease_keys WHERE lease = ?", (lease,))
        self._conn.execute("DELETE FROM leases WHERE id = ?", (lease,))
        self._ttl.pop(lease, None)
        return kbs

    def attach(self, kb: bytes, lease: int | None) -> None:
        """Attach key ``kb`` to ``lease`` (None: to no lease), replacing any attachment."""
        if lease is None:
            self._conn.execute("DELETE FROM lease_keys WHERE key = ?", (kb,))
        else:
            self._conn.execute(
                "INSERT OR REPLACE INTO lease_keys (key, lease) VALUES (?, ?)", (kb, lease)
            )


def lease_refusal(leases: LeaseTable, cmd: LeaseGrant | LeaseRevoke) -> Outcome | None:
    """Why applying ``cmd`` changes nothing (None: it applies)."""
    if isinstance(cmd, LeaseRevoke):
        return None if cmd.lease in leases else Outcome.LEASE_NOT_FOUND
    if cmd.lease in leases:
        return Outcome.LEASE_EXISTS
    if len(leases) >= MAX_LEASES:
        return Outcome.TOO_MANY_LEASES
    return None
