"""A watch's events and where it stands: the pure part ``Watch`` and ``AsyncWatch`` share.

``GET /watch`` answers with Server-Sent Events (see ``docs/openapi.yaml``): ``put``/``delete``
events whose changes of one revision are consecutive, only the last of them carrying ``id:
<revision>``; ``progress`` (every change up to a revision was sent); and a final ``compacted``
or ``cancelled``. ``SseDecoder`` turns lines into messages; ``WatchPosition`` turns messages
into events and remembers the last whole revision delivered, so a reconnection (to any node:
every node applies the same log, so revisions name the same changes everywhere) resumes at
the revision after it: a revision cut in the middle is dropped and received again whole, none
is skipped and none delivered twice. No I/O and no clock here: unit tests drive it line by line.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Literal

from raftnode.client.errors import ClientError

EventType = Literal["put", "delete", "progress"]
MAX_PENDING_EVENTS = 100_000
"""Changes of one revision held until its end; a transaction has far fewer (limits.max_txn_ops)."""


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change (``put`` or ``delete``), or, when asked for, a ``progress`` mark.

    ``revision`` is the store revision of the change (every change of one transaction shares
    it); ``value`` is None for a delete; ``create_revision``, ``mod_revision`` and ``version``
    are the key's as the node sent them (``version`` 0 after a delete). A progress event has
    only ``revision``: every change up to it was delivered."""

    type: EventType
    revision: int
    key: str | None = None
    value: str | None = None
    create_revision: int | None = None
    mod_revision: int | None = None
    version: int | None = None


class WatchCompacted(ClientError):
    """The changes the watch needs are gone from the nodes' history window: list the keys
    again (``range``), then watch from ``Page.revision + 1``. ``compact_revision``: changes
    up to it are no longer kept; ``start_revision``: the first revision the watch needed."""

    def __init__(self, compact_revision: int, start_revision: int | None) -> None:
        super().__init__(
            f"the watch needs changes from revision {start_revision} on, but the nodes keep "
            f"only those after {compact_revision}: list the keys again and watch from the "
            "listing's revision + 1"
        )
        self.compact_revision = compact_revision
        self.start_revision = start_revision


class StreamBroken(Exception):
    """The stream ended or misbehaved: reconnect (internal to the watch classes)."""


@dataclass(frozen=True, slots=True)
class SseMessage:
    event: str
    id: int | None
    data: str


@dataclass(slots=True)
class SseDecoder:
    """Server-Sent Events, one line at a time (``text/event-stream``); a message ends at a
    blank line. Comments and ``retry:`` are ignored; a non-numeric ``id`` breaks the stream."""

    _event: str = ""
    _id: int | None = None
    _data: list[str] = field(default_factory=list)

    def line(self, raw: str) -> SseMessage | None:
        text = raw.rstrip("\r\n")
        if text == "":
            if not self._event and not self._data:
                self._id = None
                return None
            message = SseMessage(self._event or "message", self._id, "\n".join(self._data))
            self._event, self._id, self._data = "", None, []
            return message
        if text.startswith(":"):
            return None
        name, _, value = text.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if not value.isdigit():
                raise StreamBroken(f"an event id that is not a revision: {value[:40]!r}")
            self._id = int(value)
        return None


@dataclass(frozen=True, slots=True)
class WatchTarget:
    """What is watched: one ``key``, or every key under ``prefix`` (``""``: all keys)."""

    key: str | None = None
    prefix: str | None = None

    def __post_init__(self) -> None:
        if (self.key is None) == (self.prefix is None):
            raise ValueError("watch one key or one prefix (prefix='' watches every key)")
        if self.key is not None and (not isinstance(self.key, str) or not self.key):
            raise ValueError(f"the watched key must be a non-empty string, not {self.key!r}")
        if self.prefix is not None and not isinstance(self.prefix, str):
            raise ValueError(f"the watched prefix must be a string, not {self.prefix!r}")

    def path(self, start_revision: int | None) -> str:
        params = {"key": self.key} if self.key is not None else {"prefix": self.prefix or ""}
        if start_revision is not None:
            params["start_revision"] = str(start_revision)
        return "/watch?" + urllib.parse.urlencode(params)

    def __str__(self) -> str:
        return f"key {self.key!r}" if self.key is not None else f"prefix {self.prefix!r}"


def check_start_revision(start_revision: int | None) -> int | None:
    if start_revision is not None and (type(start_revision) is not int or start_revision < 1):
        raise ValueError(f"start_revision must be an integer from 1, not {start_revision!r}")
    return start_revision


@dataclass(slots=True)
class WatchPosition:
    """Where a watch stands. ``last`` is the last revision wholly delivered (None before the
    first stream said where "now" is, for a watch from the next revision)."""

    start_revision: int | None = None
    progress_events: bool = False
    last: int | None = field(init=False, default=None)
    _pending: list[WatchEvent] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        check_start_revision(self.start_revision)
        if self.start_revision is not None:
            self.last = self.start_revision - 1

    @property
    def next_start(self) -> int | None:
        """The ``start_revision`` of the next connection."""
        return None if self.last is None else self.last + 1

    def opened(self, header_revision: int | None) -> None:
        """A stream began; a watch from "now" learns which revision now is (the node sends
        its revision, and the stream starts after it)."""
        self._pending.clear()
        if self.last is None and header_revision is not None:
            self.last = header_revision

    def broken(self) -> None:
        """The stream ended: a revision cut in the middle comes again whole."""
        self._pending.clear()

    def message(self, msg: SseMessage) -> list[WatchEvent]:
        """The events ``msg`` completes (none until a revision's last change arrives); raises
        ``WatchCompacted``, or ``StreamBroken`` when the node ended the stream."""
        if msg.event in ("put", "delete"):
            data = _data(msg)
            key = data.get("key")
            if not isinstance(key, str):
                raise StreamBroken("a change event without a key")
            value = data.get("value")
            self._pending.append(
                WatchEvent(
                    msg.event,  # type: ignore[arg-type]
                    0,
                    key,
                    value if isinstance(value, str) else None,
                    _int(data, "create_revision"),
                    _int(data, "mod_revision"),
                    _int(data, "version"),
                )
            )
            if len(self._pending) > MAX_PENDING_EVENTS:
                raise StreamBroken(f"more than {MAX_PENDING_EVENTS} changes in one revision")
            if msg.id is None:
                return []
            return self._complete(msg.id)
        if msg.event == "progress":
            revision = msg.id if msg.id is not None else _int(_data(msg), "revision")
            if revision is None or self._pending:
                raise StreamBroken("a progress event inside a revision, or without one")
            if self.last is None or revision > self.last:
                self.last = revision
            return [WatchEvent("progress", self.last)] if self.progress_events else []
        if msg.event == "compacted":
            compact = _int(_data(msg), "compact_revision")
            raise WatchCompacted(compact if compact is not None else 0, self.next_start)
        if msg.event == "cancelled":
            reason = _data(msg).get("reason")
            raise StreamBroken(f"the node cancelled the watch: {reason}")
        return []  # an event type this client does not know: skipped

    def _complete(self, revision: int) -> list[WatchEvent]:
        events, self._pending = self._pending, []
        if self.last is not None and revision <= self.last:
            return []  # already delivered (a node resent it): never twice
        self.last = revision
        return [_with_revision(e, revision) for e in events]


def _with_revision(event: WatchEvent, revision: int) -> WatchEvent:
    return WatchEvent(
        event.type,
        revision,
        event.key,
        event.value,
        event.create_revision,
        event.mod_revision,
        event.version,
    )


def _data(msg: SseMessage) -> dict[str, Any]:
    try:
        obj = json.loads(msg.data)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        raise StreamBroken(f"a {msg.event} event whose data is not a JSON object")
    return obj


def _int(obj: dict[str, Any], name: str) -> int | None:
    value = obj.get(name)
    return value if type(value) is int else None


def compacted_from_answer(body: dict[str, Any], start_revision: int | None) -> WatchCompacted:
    """The error for a 410 answer to ``GET /watch``."""
    compact = body.get("compact_revision")
    return WatchCompacted(compact if type(compact) is int else 0, start_revision)
