"""The watch's event parsing and resume logic, and its reconnection over fake streams: a
stream cut inside a revision is resumed on another endpoint at that revision, which is then
delivered whole and once; a compacted start raises the revision to re-list from."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from raftnode.client import (
    AsyncClient,
    BadRequest,
    Client,
    RetryPolicy,
    Unavailable,
    WatchCompacted,
    WatchEvent,
)
from raftnode.client.endpoints import Endpoint
from raftnode.client.retry import TransportError
from raftnode.client.watch_events import (
    SseDecoder,
    SseMessage,
    StreamBroken,
    WatchPosition,
    WatchTarget,
)

FAST = RetryPolicy(timeout=5.0, attempt_timeout=1.0, backoff_initial=0.001, backoff_max=0.002)


def change(kind: str, key: str, rev: int, *, last: bool = True, value: str = "v") -> str:
    body: dict[str, Any] = {"key": key}
    if kind == "put":
        body["value"] = value
    body.update(create_revision=rev, mod_revision=rev, version=1 if kind == "put" else 0)
    head = f"id: {rev}\n" if last else ""
    return f"{head}event: {kind}\ndata: {json.dumps(body)}\n\n"


def progress(rev: int) -> str:
    return f"id: {rev}\nevent: progress\ndata: {json.dumps({'revision': rev})}\n\n"


def feed(position: WatchPosition, text: str) -> list[WatchEvent]:
    decoder = SseDecoder()
    out: list[WatchEvent] = []
    for line in text.splitlines(keepends=True):
        message = decoder.line(line)
        if message is not None:
            out.extend(position.message(message))
    return out


# -- parsing ------------------------------------------------------------------------------------


def test_the_decoder_joins_fields_until_a_blank_line_and_skips_comments_and_retry() -> None:
    d = SseDecoder()
    lines = ["retry: 1000\n", "\n", ": a comment\n", "id: 7\n", "event: put\n", "data: {}\r\n"]
    assert [d.line(x) for x in lines] == [None] * 6
    assert d.line("\n") == SseMessage("put", 7, "{}")
    assert d.line("data: a\n") is None and d.line("data: b\n") is None
    assert d.line("\n") == SseMessage("message", None, "a\nb")
    with pytest.raises(StreamBroken):
        d.line("id: seven\n")


def test_changes_of_one_revision_come_out_together_at_its_id_with_their_fields() -> None:
    p = WatchPosition(start_revision=5)
    assert p.last == 4 and p.next_start == 5
    text = change("put", "a", 5, last=False, value="x") + change("delete", "b", 5)
    events = feed(p, text)
    assert events == [
        WatchEvent("put", 5, "a", "x", 5, 5, 1),
        WatchEvent("delete", 5, "b", None, 5, 5, 0),
    ]
    assert p.last == 5 and p.next_start == 6


def test_a_revision_cut_in_the_middle_is_dropped_then_delivered_whole_once() -> None:
    p = WatchPosition(start_revision=1)
    assert len(feed(p, change("put", "a", 1))) == 1
    assert feed(p, change("put", "b", 2, last=False)) == []  # the stream breaks here
    p.broken()
    assert p.next_start == 2
    again = feed(p, change("put", "b", 2, last=False) + change("put", "c", 2))
    assert [(e.revision, e.key) for e in again] == [(2, "b"), (2, "c")]
    # A node that resends what was delivered: never twice.
    assert feed(p, change("put", "c", 2) + change("put", "d", 3)) == [
        WatchEvent("put", 3, "d", "v", 3, 3, 1)
    ]


def test_progress_moves_the_position_and_is_yielded_only_when_asked() -> None:
    quiet = WatchPosition()
    quiet.opened(10)  # a watch from "now": the node says now is 10
    assert quiet.next_start == 11
    assert feed(quiet, progress(14)) == [] and quiet.next_start == 15
    loud = WatchPosition(start_revision=3, progress_events=True)
    assert feed(loud, progress(9)) == [WatchEvent("progress", 9)]
    assert feed(loud, progress(8)) == [WatchEvent("progress", 9)] and loud.last == 9


def test_compacted_raises_with_the_revision_and_cancelled_breaks_the_stream() -> None:
    p = WatchPosition(start_revision=3)
    with pytest.raises(WatchCompacted) as e:
        feed(p, 'event: compacted\ndata: {"error":"compacted","compact_revision":40}\n\n')
    assert e.value.compact_revision == 40 and e.value.start_revision == 3
    assert "list the keys again" in str(e.value)
    with pytest.raises(StreamBroken, match="slow"):
        feed(p, 'event: cancelled\ndata: {"reason":"slow","resume_revision":3}\n\n')
    with pytest.raises(StreamBroken):
        feed(p, "event: put\ndata: not json\n\n")


def test_targets_build_the_query_and_refuse_ambiguity() -> None:
    assert WatchTarget(key="a b").path(None) == "/watch?key=a+b"
    assert WatchTarget(prefix="").path(7) == "/watch?prefix=&start_revision=7"
    for bad in ({}, {"key": "a", "prefix": "b"}, {"key": ""}):
        with pytest.raises(ValueError):
            WatchTarget(**bad)
    with pytest.raises(ValueError, match="start_revision"):
        WatchPosition(start_revision=0)


# -- reconnection over fake streams -------------------------------------------------------------


@dataclass
class FakeStream:
    status: int
    lines: list[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    closed: bool = False

    def readline(self) -> bytes:
        if not self.lines:
            return b""
        item = self.lines.pop(0)
        if item == b"RESET":
            raise ConnectionResetError("reset by peer")
        return item

    def read_error_body(self) -> bytes:
        return self.body

    def interrupt(self) -> None:
        self.lines.clear()

    def close(self) -> None:
        self.closed = True

    async def aread(self) -> bytes:
        return self.readline()


def stream(text: str, *, reset: bool = False, revision: int | None = None) -> FakeStream:
    lines = [x.encode() for x in text.splitlines(keepends=True)]
    headers = {"x-raftnode-revision": str(revision)} if revision is not None else {}
    return FakeStream(200, lines + ([b"RESET"] if reset else []), headers)


def refusal(status: int, body: dict[str, Any]) -> FakeStream:
    return FakeStream(status, [], {"retry-after": "0"}, json.dumps(body).encode())


@dataclass
class FakeOpener:
    """Hands out scripted answers per endpoint port, recording (port, path) of each open."""

    script: dict[int, list[FakeStream | TransportError]]
    opened: list[tuple[int, str]] = field(default_factory=list)

    def __call__(
        self, endpoint: Endpoint, path: str, headers: Mapping[str, str], ct: float, it: float
    ) -> FakeStream:
        self.opened.append((endpoint.port, path))
        queue = self.script.get(endpoint.port) or [TransportError("refused", sent=False)]
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, TransportError):
            raise item
        return item


class AsyncFakeStream:
    def __init__(self, inner: FakeStream) -> None:
        self.inner = inner
        self.status, self.headers = inner.status, inner.headers

    async def readline(self) -> bytes:
        return self.inner.readline()

    async def read_error_body(self) -> bytes:
        return self.inner.body

    def close(self) -> None:
        self.inner.close()


ENDPOINTS = ["http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"]
REFUSED = TransportError("refused", sent=False)


def scripted() -> FakeOpener:
    # Node 1 delivers revisions 5 and 6, then dies inside revision 7; node 2 refuses; node 3
    # answers from revision 7 (whole) on.
    return FakeOpener(
        {
            1: [
                stream(
                    change("put", "k/a", 5)
                    + change("put", "k/b", 6)
                    + change("put", "k/c", 7, last=False),
                    reset=True,
                ),
                REFUSED,
            ],
            2: [REFUSED],
            3: [
                stream(
                    change("put", "k/c", 7, last=False)
                    + change("delete", "k/a", 7)
                    + progress(7)
                    + change("put", "k/d", 8)
                )
            ],
        }
    )


def test_a_stream_cut_inside_a_revision_resumes_on_another_node_without_gap_or_duplicate() -> None:
    opener = scripted()
    with Client(ENDPOINTS, retry=FAST, watch_opener=opener) as kv:
        watch = kv.watch(prefix="k/", start_revision=5)
        got = [next(watch) for _ in range(5)]
        watch.close()
        assert list(watch) == []
    assert [(e.revision, e.type, e.key) for e in got] == [
        (5, "put", "k/a"),
        (6, "put", "k/b"),
        (7, "put", "k/c"),
        (7, "delete", "k/a"),
        (8, "put", "k/d"),
    ]
    paths = opener.opened
    assert paths[0] == (1, "/watch?prefix=k%2F&start_revision=5")
    # After the cut: the next endpoints, from the revision after the last whole one.
    assert paths[1:] == [
        (2, "/watch?prefix=k%2F&start_revision=7"),
        (3, "/watch?prefix=k%2F&start_revision=7"),
    ]
    assert watch.reconnects == 1 and watch.revision == 8


def test_the_async_watch_resumes_the_same_way() -> None:
    opener = scripted()

    async def open_async(*args: Any) -> AsyncFakeStream:
        return AsyncFakeStream(opener(*args))

    async def run() -> list[WatchEvent]:
        kv = AsyncClient(ENDPOINTS, retry=FAST, watch_opener=open_async)
        async with kv, kv.watch(prefix="k/", start_revision=5) as watch:
            got = []
            async for event in watch:
                got.append(event)
                if len(got) == 5:
                    break
            return got

    got = asyncio.run(run())
    assert [(e.revision, e.key) for e in got] == [
        (5, "k/a"),
        (6, "k/b"),
        (7, "k/c"),
        (7, "k/a"),
        (8, "k/d"),
    ]
    assert opener.opened[-1] == (3, "/watch?prefix=k%2F&start_revision=7")


def test_a_watch_from_now_resumes_after_the_revision_the_first_node_named() -> None:
    opener = FakeOpener(
        {
            1: [stream("retry: 1000\n\n", reset=True, revision=41), REFUSED],
            2: [stream(change("put", "x", 42))],
        }
    )
    with Client(ENDPOINTS[:2], retry=FAST, watch_opener=opener) as kv, kv.watch("x") as watch:
        assert next(watch).revision == 42
    assert opener.opened == [(1, "/watch?key=x"), (2, "/watch?key=x&start_revision=42")]


def test_a_compacted_start_raises_the_revision_to_relist_from() -> None:
    gone = refusal(410, {"error": "compacted", "message": "...", "compact_revision": 90})
    opener = FakeOpener({1: [gone]})
    kv = Client(ENDPOINTS[:1], retry=FAST, watch_opener=opener)
    with kv, pytest.raises(WatchCompacted) as e:
        kv.watch(prefix="", start_revision=3)
    assert e.value.compact_revision == 90 and e.value.start_revision == 3


def test_503_moves_on_a_bad_request_raises_and_no_node_at_all_gives_up() -> None:
    busy = refusal(503, {"error": "unavailable", "message": "no history yet"})
    opener = FakeOpener({1: [busy], 2: [stream(change("put", "x", 3))]})
    with Client(ENDPOINTS[:2], retry=FAST, watch_opener=opener) as kv, kv.watch("x") as w:
        assert next(w).revision == 3
    bad = refusal(400, {"error": "bad_param", "message": "start_revision must be ..."})
    kv = Client(ENDPOINTS[:1], retry=FAST, watch_opener=FakeOpener({1: [bad]}))
    with kv, pytest.raises(BadRequest):
        kv.watch("x")
    clock = [0.0]

    def dead(*args: Any) -> FakeStream:
        clock[0] += 0.5
        raise REFUSED

    kv = Client(ENDPOINTS, retry=FAST, watch_opener=dead, clock=lambda: clock[0])
    with kv, pytest.raises(Unavailable, match="no node could take the call"):
        kv.watch("x")
    assert clock[0] <= FAST.timeout + 1.0  # bounded: gave up at the deadline
