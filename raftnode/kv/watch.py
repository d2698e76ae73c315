"""Watches: every change to a key range from a revision on, from this node's applied state.

One ``WatchHub`` per node waits on the node's change notification (``RaftNode.changed``: no
polling), reads the store's history window once per wake-up for every watcher, and hands each
change to the watchers whose range it touches. A new watcher that starts in the past first
catches up from the history window on its own, page by page, then joins the hub's stream; a
change is handed over only at or after the watcher's ``next_revision``, so nothing arrives
twice and, revision by revision, nothing is skipped.

Bounds: each watcher holds at most ``buffer_events`` changes not yet handed to its connection.
One more while its connection is backed up (the stream is not waiting for changes: its client
reads too slowly) and it is cancelled (``Cancelled``: it names the revision to resume from), so
a slow client never holds the others back or grows the node's memory; one more while its
stream keeps up (a burst, such as a snapshot that moves the store many revisions at once) and
it reads the rest from the history window itself, page by page. A gap in the history (a watcher
further behind than the window, or a snapshot that jumped the store past it) ends the watcher
with ``Compacted``: never a silent gap. A compaction on command (``raftnode.kv.history``) that
moves the window past a watcher still catching up ends it the same way, at its next page.

What the hub does is counted through two optional callbacks (the node's metrics): the changes
handed to streams, and the watchers it ended, by a short reason (``compacted``, ``slow_client``,
``history_replaced``, ``shutdown``, ``internal_error``; a client that goes away is not counted).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from raftnode.kv.history import Change
from raftnode.kv.store import KeyRange, KeyValueStore
from raftnode.node import RaftNode

log = logging.getLogger(__name__)

_ENC = "utf-8"
_ERRORS = "surrogatepass"
CLIENT_CLOSED = "client_closed"
"""The ``Cancelled.code`` of a watcher whose client went away (not counted as cancelled)."""
PAGE_CHANGES = 512
"""Changes read from the history per step (a revision is never split)."""


class WatchError(Exception):
    """A watch cannot start."""


class HistoryUnavailable(WatchError):
    """The store keeps no history yet (format upgrade pending: the leader's first write)."""


class TooManyWatchers(WatchError):
    pass


class CompactedError(WatchError):
    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"revisions up to {compact_revision} are compacted")
        self.compact_revision = compact_revision


@dataclass(frozen=True, slots=True)
class Compacted:
    """The end of a watch: the changes it needs are no longer in the history window."""

    compact_revision: int


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The end of a watch for another reason; ``resume_revision`` is the first revision it did
    not hand over."""

    reason: str
    resume_revision: int
    code: str = "cancelled"
    """The reason in a word, for metrics (``slow_client``, ``shutdown``, ...)."""


@dataclass(frozen=True, slots=True)
class Progress:
    """Every change up to ``revision`` in the watcher's range was handed over."""

    revision: int


WatchItem = list[Change] | Progress | Compacted | Cancelled


class Watcher:
    """One watch: its range, the next revision it needs, and its bounded buffer."""

    def __init__(self, hub: WatchHub, key_range: KeyRange, next_revision: int) -> None:
        self._hub = hub
        self.key_range = key_range
        self.next_revision = next_revision
        """The first revision not yet queued (or handed over)."""
        self.synced = False
        """Caught up with the hub: from here on the hub queues its changes."""
        self._buffer: deque[Change] = deque()
        self._end: Compacted | Cancelled | None = None
        self._wake = asyncio.Event()
        self._waiting = False
        """The stream is waiting for changes (it has sent all it was given): not backed up."""

    def matches(self, kb: bytes) -> bool:
        r = self.key_range
        return kb >= r.low and (r.high is None or kb < r.high)

    @property
    def ended(self) -> bool:
        return self._end is not None

    def push(self, change: Change) -> None:
        """Queue a change (the hub's side); cancels the watcher when its buffer is full."""
        if self._end is not None or not self.synced or change.revision < self.next_revision:
            return
        if len(self._buffer) >= self._hub.buffer_events and change.revision != self._last_rev():
            if self._waiting:
                # A burst (a snapshot jump) larger than the buffer, to a stream that keeps up:
                # it reads the rest from the history itself, at its own pace.
                self.synced = False
                self.next_revision = change.revision
                return
            self.end(
                Cancelled(
                    f"this watcher fell more than {self._hub.buffer_events} events behind "
                    "(watch.buffer_events): the client reads too slowly",
                    self._first_unsent(),
                    "slow_client",
                )
            )
            return
        self._buffer.append(change)
        self._wake.set()

    def caught_up_to(self, revision: int) -> None:
        """Every change up to ``revision`` is queued (the hub read that far)."""
        if revision >= self.next_revision:
            self.next_revision = revision + 1

    def nudge(self) -> None:
        """Wake the watcher's stream (it reads the history further itself)."""
        self._wake.set()

    def _last_rev(self) -> int:
        return self._buffer[-1].revision if self._buffer else -1

    def _first_unsent(self) -> int:
        return self._buffer[0].revision if self._buffer else self.next_revision

    def end(self, why: Compacted | Cancelled) -> None:
        if self._end is None:
            self._end = why
            self._hub.ended(why)
            self._buffer.clear()
            self._hub.discard(self)
            self._wake.set()

    def close(self) -> None:
        """The client went away: free the watcher."""
        self.end(Cancelled("the client closed the connection", self.next_revision, CLIENT_CLOSED))

    async def items(self, progress_seconds: float) -> AsyncIterator[WatchItem]:
        """Batches of changes in revision order, ``Progress`` when idle for
        ``progress_seconds``, and last a ``Compacted`` or ``Cancelled`` (not when closed)."""
        try:
            while True:
                if self._buffer:
                    batch = list(self._buffer)
                    self._buffer.clear()
                    self._hub.sent(len(batch))
                    yield batch
                    continue
                page: list[Change] = []
                while not page and not self.synced and self._end is None:
                    page = self._hub.catch_up(self)
                if page:
                    self._hub.sent(len(page))
                    yield page
                    continue
                if self._end is not None:
                    yield self._end
                    return
                self._wake.clear()
                self._waiting = True
                try:
                    await asyncio.wait_for(self._wake.wait(), progress_seconds)
                except TimeoutError:
                    # The hub may have queued changes after the timeout fired and before this
                    # resumed: they go first. A progress event naming their revision ahead of
                    # them would tell the client it has them, and it would drop them as repeats.
                    if self.synced and not self._buffer:
                        self._waiting = False
                        # A start in the future is not progress: never past what applied.
                        yield Progress(min(self.next_revision - 1, self._hub.position))
                finally:
                    self._waiting = False
        finally:
            self._hub.discard(self)


class WatchHub:
    """Every watcher of one node, fed from the store's history on each change notification."""

    def __init__(
        self,
        node: RaftNode,
        store: KeyValueStore,
        *,
        buffer_events: int,
        max_watchers: int,
        on_sent: Callable[[int], None] | None = None,
        on_cancelled: Callable[[str], None] | None = None,
    ) -> None:
        self.node = node
        self._on_sent = on_sent
        self._on_cancelled = on_cancelled
        self.store = store
        self.buffer_events = buffer_events
        self.max_watchers = max_watchers
        self._watchers: set[Watcher] = set()
        self._position = 0
        """Every change up to here was handed to the synced watchers (set when the first
        watcher opens)."""
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._watchers)

    @property
    def position(self) -> int:
        """Every change up to this revision was handed to the synced watchers."""
        return max(self._position, 0)

    def open(self, key_range: KeyRange, start_revision: int | None) -> Watcher:
        """A watcher of ``key_range`` from ``start_revision`` (None: the next revision)."""
        history = self.store.history
        if history is None:
            raise HistoryUnavailable(
                "this node keeps no change history yet: the store format upgrade comes with "
                "the cluster's first write once every member runs this release"
            )
        if self._closed:
            raise HistoryUnavailable("the node is shutting down")
        if len(self._watchers) >= self.max_watchers:
            raise TooManyWatchers(
                f"this node serves {self.max_watchers} watches already (watch.max_watchers)"
            )
        start = self.store.revision + 1 if start_revision is None else start_revision
        if start <= history.compact_revision:
            raise CompactedError(history.compact_revision)
        if not self._watchers:  # the hub was idle: nothing before now is owed to anyone
            self._position = self.store.revision
        watcher = Watcher(self, key_range, max(start, 1))
        watcher.synced = watcher.next_revision > self._position  # else it catches up first
        self._watchers.add(watcher)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        return watcher

    def discard(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def sent(self, count: int) -> None:
        """A watcher handed ``count`` changes to its stream."""
        if self._on_sent is not None and count:
            self._on_sent(count)

    def ended(self, why: Compacted | Cancelled) -> None:
        """A watcher ended: counted by reason, unless its client went away."""
        code = "compacted" if isinstance(why, Compacted) else why.code
        if self._on_cancelled is not None and code != CLIENT_CLOSED:
            self._on_cancelled(code)

    def catch_up(self, watcher: Watcher) -> list[Change]:
        """The next page of a watcher still behind the hub; marks it synced once it is not."""
        history = self.store.history
        if history is None:
            watcher.end(
                Cancelled(
                    "the store's history was replaced", watcher.next_revision, "history_replaced"
                )
            )
            return []
        if watcher.next_revision > self._position:
            watcher.synced = True
            return []
        if watcher.next_revision <= history.compact_revision:
            watcher.end(Compacted(history.compact_revision))
            return []
        changes = [
            c
            for c in history.changes(watcher.next_revision - 1, PAGE_CHANGES)
            if c.revision <= self._position
        ]
        upto = changes[-1].revision if changes else self._position
        if len(changes) < PAGE_CHANGES:
            upto = self._position  # nothing else up to the hub's position
        watcher.caught_up_to(upto)
        return [c for c in changes if watcher.matches(c.key.encode(_ENC, _ERRORS))]

    async def _run(self) -> None:
        """Wait for changes (bounded waits on the node's notification) and hand them over."""
        loop = asyncio.get_running_loop()
        while self._watchers and not self._closed:
            if not await self.node.changed(loop.time() + 1.0) and self.node.stopping:
                break
            try:
                self.dispatch()
            except Exception:
                log.exception("watch dispatch failed; ending every watch")
                self.close("internal error", "internal_error")
                return
        if self.node.stopping:
            self.close("the node is shutting down")

    def dispatch(self) -> None:
        """Hand every change after the hub's position to the synced watchers it concerns."""
        history = self.store.history
        if history is None:
            self._position = self.store.revision
            return
        while self._position < self.store.revision:
            if self._position < history.compact_revision:
                for w in [w for w in self._watchers if w.next_revision <= history.compact_revision]:
                    w.end(Compacted(history.compact_revision))
                self._position = history.compact_revision
                continue
            changes = history.changes(self._position, PAGE_CHANGES)
            if not changes:
                self._position = self.store.revision
                break
            synced = [w for w in self._watchers if w.synced]
            for change in changes:
                kb = change.key.encode(_ENC, _ERRORS)
                for w in synced:
                    if w.matches(kb):
                        w.push(change)
            self._position = changes[-1].revision
            for w in synced:
                if w.synced:  # not demoted by a burst on this page
                    w.caught_up_to(self._position)
        for w in self._watchers:
            if not w.synced:
                w.nudge()

    def close(self, reason: str, code: str = "shutdown") -> None:
        """End every watcher (shutdown); new ones are refused."""
        self._closed = True
        for w in list(self._watchers):
            w.end(Cancelled(reason, w.next_revision, code))
