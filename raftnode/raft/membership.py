"""Which configuration is in force: the latest one in the log, committed or not.

Single-server changes take effect as soon as their entry is appended (Raft dissertation, 4.1) and
are undone if the entry is truncated. The tracker keeps the configuration entries that are still
in the log, so finding the current one, or the one at a snapshot index, never scans the log.
"""

from __future__ import annotations

from raftnode.raft.types import ConfChange, ConfState, Entry, EntryType


class MembershipTracker:
    __slots__ = ("_base", "_base_index", "_changes")

    def __init__(self, base: ConfState, base_index: int):
        self._base = base
        self._base_index = base_index
        self._changes: list[tuple[int, ConfState]] = []

    @property
    def current(self) -> ConfState:
        return self._changes[-1][1] if self._changes else self._base

    def last_change_index(self) -> int:
        return self._changes[-1][0] if self._changes else self._base_index

    def observe(self, entries: list[Entry] | tuple[Entry, ...]) -> bool:
        """Record configuration entries just appended. True when the configuration changed."""
        changed = False
        for entry in entries:
            if entry.type is EntryType.CONF_CHANGE:
                self._changes.append((entry.index, ConfChange.decode(entry.data).result))
                changed = True
        return changed

    def truncate_from(self, index: int) -> None:
        """Forget configurations at or after ``index`` (their entries were overwritten)."""
        while self._changes and self._changes[-1][0] >= index:
            self._changes.pop()

    def at(self, index: int) -> ConfState:
        conf = self._base
        for change_index, change_conf in self._changes:
            if change_index > index:
                break
            conf = change_conf
        return conf

    def compact(self, index: int) -> None:
        """Fold configurations at or below ``index`` into the base."""
        while self._changes and self._changes[0][0] <= index:
            self._base_index, self._base = self._changes.pop(0)

    def reset(self, base: ConfState, base_index: int) -> None:
        self._base = base
        self._base_index = base_index
        self._changes = []
