"""``GET /watch``: a watch's changes as Server-Sent Events (``text/event-stream``).

Each change is one event: ``event: put`` or ``event: delete`` and ``data:`` a JSON object
(``key``, ``value`` for a put, ``create_revision``, ``mod_revision``, ``version``). The changes
of one revision (a transaction) are consecutive, and only the last of them carries
``id: <revision>``, so a client that resumes with ``Last-Event-ID`` after a cut in the middle
of a revision gets the whole revision again rather than a part of it. ``event: progress``
(``{"revision": R}``, with ``id: R``) says every change up to R was sent; a stream ends with
``event: compacted`` (``{"error": "compacted", "compact_revision": R}``) or ``event:
cancelled`` (``{"error": "cancelled", "reason": ..., "resume_revision": R}``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from raftnode.http.connection import Request, Response, StreamedEvents
from raftnode.http.errors import ApiError, ErrorCode, bad_request
from raftnode.kv.history import Change
from raftnode.kv.store import KeyRange
from raftnode.kv.watch import (
    Cancelled,
    Compacted,
    CompactedError,
    HistoryUnavailable,
    Progress,
    TooManyWatchers,
    Watcher,
    WatchHub,
)

WATCH_PARAMS = {"key", "prefix", "start", "end", "start_revision"}
RETRY_MS = 1000
"""The reconnection delay the stream suggests to clients (``retry:``)."""


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def start_revision(request: Request) -> int | None:
    """``start_revision``, or the revision after ``Last-Event-ID`` (a resumed stream), or None
    (from the next revision)."""
    given = request.param("start_revision")
    last_id = request.headers.get("last-event-id")
    if last_id is not None and last_id.strip():
        if not last_id.strip().isdigit():
            raise bad_request(
                f"Last-Event-ID must be a revision (an integer), got {last_id!r}",
                ErrorCode.BAD_PARAM,
            )
        return int(last_id) + 1
    if given is None or given == "":
        return None
    if not given.isdigit() or int(given) < 1:
        raise bad_request(
            f"start_revision must be an integer from 1, got {given!r}", ErrorCode.BAD_PARAM
        )
    return int(given)


def open_watch(hub: WatchHub, key_range: KeyRange, start: int | None) -> Watcher:
    """A watcher, or the API error that says why not (410 compacted, 503)."""
    try:
        return hub.open(key_range, start)
    except CompactedError as e:
        raise ApiError(
            410,
            ErrorCode.COMPACTED,
            f"the changes from revision {start} on are no longer kept (compacted up to "
            f"{e.compact_revision}); list the keys again and watch from the revision after",
            extra={"compact_revision": e.compact_revision},
        ) from None
    except (HistoryUnavailable, TooManyWatchers) as e:
        raise ApiError(503, ErrorCode.UNAVAILABLE, str(e), retry_after=1) from None


def event_stream(watcher: Watcher, progress_seconds: float, revision: int) -> Response:
    headers = {"Cache-Control": "no-cache", "X-Raftnode-Revision": str(revision)}
    return Response(
        200,
        headers=headers,
        content_type="text/event-stream; charset=utf-8",
        stream=StreamedEvents(_chunks(watcher, progress_seconds)),
    )


async def _chunks(watcher: Watcher, progress_seconds: float) -> AsyncIterator[bytes]:
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        async for item in watcher.items(progress_seconds):
            if isinstance(item, list):
                yield encode_changes(item)
            elif isinstance(item, Progress):
                data = _dumps({"revision": item.revision})
                yield f"id: {item.revision}\nevent: progress\ndata: {data}\n\n".encode()
            elif isinstance(item, Compacted):
                data = _dumps({"error": "compacted", "compact_revision": item.compact_revision})
                yield f"event: compacted\ndata: {data}\n\n".encode()
            elif isinstance(item, Cancelled):
                data = _dumps(
                    {
                        "error": "cancelled",
                        "reason": item.reason,
                        "resume_revision": item.resume_revision,
                    }
                )
                yield f"event: cancelled\ndata: {data}\n\n".encode()
    finally:
        watcher.close()


def encode_changes(changes: list[Change]) -> bytes:
    """Events for whole revisions; ``id`` on the last change of each."""
    out = []
    for i, c in enumerate(changes):
        body: dict[str, Any] = {"key": c.key}
        if c.kind == "put":
            body["value"] = c.value
        body.update(
            create_revision=c.create_revision, mod_revision=c.mod_revision, version=c.version
        )
        last = i + 1 == len(changes) or changes[i + 1].revision != c.revision
        head = f"id: {c.revision}\n" if last else ""
        out.append(f"{head}event: {c.kind}\ndata: {_dumps(body)}\n\n")
    return "".join(out).encode("utf-8", "surrogatepass")
