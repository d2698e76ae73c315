"""The in-memory Raft log: what the core knows, and which part storage has not seen yet.

The log keeps entries after its ``offset`` (the index of the last compacted entry, usually a
snapshot index) in a Python list, so term lookups and appends are O(1) and slicing costs only the
entries taken. Entries at or below ``offset`` are gone; ``offset_term`` remembers the term of the
entry at ``offset`` so the consistency check of the entry after it still works.

``unstable_from`` marks the first index storage has not been handed yet: entries from there on go
into the next ``Ready``. A truncation below it moves it down, so storage always receives the
overwriting suffix.
"""

from __future__ import annotations

from collections.abc import Sequence

from raftnode.raft.types import Entry


class RaftLog:
    """Entries after ``offset``; commit and apply positions; the not-yet-persisted suffix."""

    __slots__ = ("_ents", "applied", "committed", "offset", "offset_term", "unstable_from")

    def __init__(self, offset: int = 0, offset_term: int = 0, entries: Sequence[Entry] = ()):
        self.offset = offset
        self.offset_term = offset_term
        self._ents: list[Entry] = []
        expected = offset + 1
        for entry in entries:
            if entry.index <= offset:
                continue
            if entry.index != expected:
                raise ValueError(
                    f"log entries are not contiguous: expected {expected}, got {entry.index}"
                )
            self._ents.append(entry)
            expected += 1
        self.committed = offset
        self.applied = offset
        self.unstable_from = self.last_index() + 1

    # --- reading -------------------------------------------------------------------------
    def first_index(self) -> int:
        return self.offset + 1

    def last_index(self) -> int:
        return self.offset + len(self._ents)

    def last_term(self) -> int:
        return self._ents[-1].term if self._ents else self.offset_term

    def term(self, index: int) -> int | None:
        """The term of the entry at ``index``; None when compacted away or beyond the end."""
        if index == self.offset:
            return self.offset_term
        pos = index - self.offset - 1
        if 0 <= pos < len(self._ents):
            return self._ents[pos].term
        return None

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def entry(self, index: int) -> Entry:
        return self._ents[index - self.offset - 1]

    def slice(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries with lo <= index < hi, stopping early once ``max_bytes`` of data is reached
        (at least one entry is returned when any is in range)."""
        start = lo - self.offset - 1
        stop = hi - self.offset - 1
        if start < 0:
            raise IndexError(f"index {lo} is compacted (log starts at {self.first_index()})")
        ents = self._ents[start:stop]
        if max_bytes is None or len(ents) <= 1:
            return ents
        size = 0
        for n, entry in enumerate(ents):
            size += len(entry.data) + 24
            if size > max_bytes and n > 0:
                return ents[:n]
        return ents

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a candidate's log (last entry at ``last_index``/``last_term``) is at least as
        up to date as this one (Raft paper, section 5.4.1)."""
        my_term = self.last_term()
        return last_term > my_term or (last_term == my_term and last_index >= self.last_index())

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """The largest index <= ``index`` whose term is <= ``term`` (or the log's offset).

        Used for fast backtracking: a follower answers a rejected append with this hint, and
        the leader uses it again to skip a whole term of mismatching entries at once.
        """
        index = min(index, self.last_index())
        while index > self.offset:
            entry_term = self._ents[index - self.offset - 1].term
            if entry_term <= term:
                return index
            index -= 1
        return index

    # --- writing -------------------------------------------------------------------------
    def append(self, entries: Sequence[Entry]) -> None:
        """Append entries that directly follow the last one, or overwrite a suffix."""
        if not entries:
            return
        first = entries[0].index
        if first <= self.last_index():
            if first <= self.committed:
                raise AssertionError(
                    f"truncating committed entry {first} (commit {self.committed})"
                )
            del self._ents[first - self.offset - 1 :]
            if first < self.unstable_from:
                self.unstable_from = first
        elif first != self.last_index() + 1:
            raise AssertionError(f"gap in log: appending {first} after {self.last_index()}")
        self._ents.extend(entries)

    def maybe_append(
        self, prev_index: int, prev_term: int, commit: int, entries: Sequence[Entry]
    ) -> tuple[int | None, int | None]:
        """AppendEntries receiver logic.

        Returns (last new index, first index actually written): the second is None when every
        entry was already present, and the first is None when ``prev_index``/``prev_term`` does not
        match (nothing changed then).
        """
        if not self.match_term(prev_index, prev_term):
            return None, None
        last_new = prev_index + len(entries)
        # Skip entries already present with the same term; the first mismatch is the conflict.
        conflict_pos = len(entries)
        for pos, entry in enumerate(entries):
            if entry.index <= self.offset:
                continue
            if not self.match_term(entry.index, entry.term):
                conflict_pos = pos
                break
        written_from = None
        if conflict_pos < len(entries):
            written_from = entries[conflict_pos].index
            self.append(entries[conflict_pos:])
        self.commit_to(min(commit, last_new))
        return last_new, written_from

    def commit_to(self, index: int) -> bool:
        if index > self.committed:
            if index > self.last_index():
                raise AssertionError(f"commit {index} beyond last index {self.last_index()}")
            self.committed = index
            return True
        return False

    def unstable_entries(self) -> list[Entry]:
        if self.unstable_from > self.last_index():
            return []
        return self._ents[self.unstable_from - self.offset - 1 :]

    def mark_handed_to_storage(self, through: int) -> None:
        self.unstable_from = max(self.unstable_from, through + 1)

    def compact(self, index: int) -> None:
        """Drop entries at or below ``index`` (they are covered by a snapshot)."""
        if index <= self.offset:
            return
        if index > self.applied:
            raise AssertionError(f"compacting {index} beyond applied {self.applied}")
        term = self.term(index)
        assert term is not None
        del self._ents[: index - self.offset]
        self.offset = index
        self.offset_term = term

    def restore(self, index: int, term: int) -> None:
        """Replace the whole log by a snapshot's position."""
        self._ents = []
        self.offset = index
        self.offset_term = term
        self.committed = index
        self.applied = index
        self.unstable_from = index + 1
