"""GET /watch on real processes: a watcher on a follower across a leader SIGKILL resumes with
Last-Event-ID and sees every change exactly once; a compacted start is refused with the revision
to re-list from; a slow watcher is cancelled while a fast one keeps up."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.integration.cluster import Cluster, Response, http


class SseReader:
    """A raw ``GET /watch`` connection and its events: (event, id, data) in order."""

    def __init__(
        self, url: str, last_event_id: int | None = None, rcvbuf: int | None = None
    ) -> None:
        parts = urlsplit(url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10.0)
        self.sock.connect((parts.hostname or "127.0.0.1", parts.port or 80))
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        head = f"GET {target} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
        if last_event_id is not None:
            head += f"Last-Event-ID: {last_event_id}\r\n"
        self.sock.sendall((head + "\r\n").encode())
        self.events: list[tuple[str, int | None, dict[str, Any]]] = []
        self.status = 0
        self.last_id: int | None = last_event_id
        self.closed = threading.Event()
        self._buf = b""

    def start(self) -> SseReader:
        threading.Thread(target=self.read_all, daemon=True).start()
        return self

    def read_all(self, until: float = 30.0) -> None:
        deadline = time.monotonic() + until
        try:
            while time.monotonic() < deadline:
                try:
                    chunk = self.sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                self._feed(chunk)
        except OSError:
            pass
        finally:
            self.closed.set()

    def _feed(self, chunk: bytes) -> None:
        self._buf += chunk
        if not self.status:
            if b"\r\n\r\n" not in self._buf:
                return
            head, self._buf = self._buf.split(b"\r\n\r\n", 1)
            self.status = int(head.split()[1])
        while b"\n\n" in self._buf:
            block, self._buf = self._buf.split(b"\n\n", 1)
            fields: dict[str, str] = {}
            for line in block.decode().splitlines():
                name, _, value = line.partition(": ")
                fields[name] = value
            if "event" not in fields:
                continue
            eid = int(fields["id"]) if "id" in fields else None
            if eid is not None:
                self.last_id = eid
            self.events.append((fields["event"], eid, json.loads(fields["data"])))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def changes(self) -> list[tuple[int, str, str]]:
        return [
            (d["mod_revision"], e, d["key"]) for e, _, d in self.events if e in ("put", "delete")
        ]

    def progressed_to(self, revision: int) -> bool:
        return any(e == "progress" and d["revision"] >= revision for e, _, d in self.events)


def configure(c: Cluster, **sections: dict[str, int]) -> None:
    """Add sections (history, watch) to every node's config before it starts."""
    for node in c.nodes:
        cfg = yaml.safe_load(node.config.read_text())
        cfg.update(sections)
        node.config.write_text(yaml.safe_dump(cfg))


@contextlib.contextmanager
def cluster_with(**sections: dict[str, int]) -> Iterator[Cluster]:
    c = Cluster()
    try:
        configure(c, **sections)
        c.start()
        c.leader()
        c.put_retrying([1, 2, 3], "first", "x")  # the format upgrade: history from here
        yield c
    finally:
        c.close()


def revision(c: Cluster, node: int) -> int:
    r = http("GET", c.url(node, "/kv?prefix=&count_only=true"))
    assert r.status == 200, r
    return int(r.json()["revision"])


def test_a_watcher_on_a_follower_resumes_across_a_leader_kill_without_gap_or_duplicate() -> None:
    with cluster_with(watch={"progress_ms": 200}) as c:
        old = c.leader()
        follower = next(i for i in (1, 2, 3) if i != old)
        start = revision(c, follower) + 1
        first = SseReader(c.url(follower, f"/watch?prefix=w/&start_revision={start}")).start()
        acked: list[str] = []
        stop = threading.Event()

        def write() -> None:
            i = 0
            while not stop.is_set() and i < 400:
                r = c.put(follower, f"w/{i:04d}", str(i), timeout=6.0)
                if r.status == 200:
                    acked.append(f"w/{i:04d}")
                i += 1
                time.sleep(0.005)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        try:
            c.wait_for("writes seen", lambda: len(first.changes()) >= 40, timeout=15)
            at_kill = len(acked)
            c.kill(old)
            c.wait_for(
                "changes after the kill", lambda: len(first.changes()) >= at_kill + 20, timeout=15
            )
            first.close()  # the client's connection drops; it resumes where it was
            first.closed.wait(5)
            second = SseReader(
                c.url(follower, "/watch?prefix=w/"), last_event_id=first.last_id
            ).start()
            c.wait_for("writes after the kill", lambda: len(acked) >= 120, timeout=20)
        finally:
            stop.set()
            writer.join(10)
        final = revision(c, follower)
        c.wait_for("caught up", lambda: second.progressed_to(final), timeout=10)
        second.close()
        assert first.status == 200 and second.status == 200
        assert first.changes() and second.changes()  # both sides of the resume carried some
        seen = [ch for ch in first.changes() if ch[0] <= (first.last_id or 0)] + second.changes()
        keys = [k for _, _, k in seen]
        assert len(keys) == len(set(keys)), "a change was delivered twice"
        assert [r for r, _, _ in seen] == sorted(r for r, _, _ in seen)
        assert set(acked) <= set(keys), "an acknowledged write was never delivered"
        listed = http("GET", c.url(follower, "/kv?prefix=w/&limit=10000")).json()["items"]
        assert sorted(keys) == sorted(it["key"] for it in listed)  # committed = delivered
        assert not any(e in ("compacted", "cancelled") for e, _, _ in second.events)


def test_a_compacted_start_is_refused_and_a_slow_watcher_is_cancelled_not_the_fast() -> None:
    with cluster_with(history={"max_revisions": 20}, watch={"buffer_events": 50}) as c:
        for i in range(30):
            c.put_retrying([1, 2, 3], f"old/{i}", "v")
        # Node 2 first applies every put (its window is what it has applied), then the answer
        # names the window's start exactly: 20 revisions back from its head.
        head = revision(c, c.leader())
        c.wait_for("node 2 caught up", lambda: revision(c, 2) >= head, timeout=10)
        now = revision(c, 2)
        r = http("GET", c.url(2, "/watch?prefix=&start_revision=2"))
        assert r.status == 410, r
        body = r.json()
        assert body["error"] == "compacted" and now >= 30
        assert body["compact_revision"] == now - 20

        slow = SseReader(c.url(2, "/watch?prefix=big/"), rcvbuf=4096)  # never read meanwhile
        fast = SseReader(c.url(2, "/watch?prefix=big/")).start()
        value = "x" * 10_000
        leader = c.leader()
        for t in range(15):
            ops = [{"op": "put", "key": f"big/{t:02d}/{k:03d}", "value": value} for k in range(100)]
            r = http("POST", c.url(leader, "/txn"), {"compare": [], "success": ops}, timeout=10)
            assert r.status == 200, r
        end = revision(c, 2)
        c.wait_for("fast watcher current", lambda: len(fast.changes()) >= 1500, timeout=15)
        slow.read_all(until=10)
        fast.close()
        assert slow.status == 200
        kinds = [e for e, _, _ in slow.events]
        assert kinds[-1] == "cancelled", kinds[-5:]
        data = slow.events[-1][2]
        assert "watch.buffer_events" in data["reason"] and data["resume_revision"] <= end
        assert len(slow.changes()) < 1500
        revisions = sorted({r for r, _, _ in fast.changes()})
        assert len(fast.changes()) == 1500 and revisions == list(range(end - 14, end + 1))
        assert not any(e == "cancelled" for e, _, _ in fast.events)


def metric(c: Cluster, node: int, line_start: str) -> float:
    text = c.health(node, "/metrics").body.decode()
    values = [float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(line_start)]
    assert len(values) == 1, (line_start, values)
    return values[0]


def txn_retrying(c: Cluster, body: dict[str, Any], timeout: float = 30.0) -> Response:
    """``POST /txn`` at the leader, again after a 503 (nothing was written: a megabyte-sized
    write under a loaded machine may meet an election) until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        r = http("POST", c.url(c.leader(), "/txn"), body, timeout=10)
        if r.status != 503 or time.monotonic() > deadline:
            return r


def test_compact_through_a_follower_ends_a_watcher_behind_it_and_moves_the_gauges() -> None:
    with cluster_with(watch={"buffer_events": 50}) as c:
        leader = c.leader()
        follower = next(i for i in (1, 2, 3) if i != leader)
        first = revision(c, leader) + 1
        value = "x" * 10_000
        for t in range(15):
            ops = [{"op": "put", "key": f"big/{t:02d}/{k:03d}", "value": value} for k in range(100)]
            r = txn_retrying(c, {"compare": [], "success": ops})
            assert r.status == 200, r
        leader = c.leader()  # an election under load may have moved it
        follower = next(i for i in (1, 2, 3) if i != leader)
        end = revision(c, leader)
        c.wait_for("the follower applied every txn", lambda: revision(c, follower) == end)
        # Catching up from the first txn, a page (~5 MB) at a time, to a client that does not
        # read yet: the stream stalls behind its first page, far behind the head.
        behind = SseReader(
            c.url(follower, f"/watch?prefix=big/&start_revision={first}"), rcvbuf=4096
        )
        c.wait_for(
            "the watch stream open", lambda: metric(c, follower, "raftnode_watchers ") == 1.0
        )
        time.sleep(0.5)
        sent_before = metric(c, follower, "raftnode_watch_events_sent_total ")
        assert sent_before > 0

        r = c.admin(follower, "POST", "/compact", {"revision": end})  # forwarded to the leader
        assert r.status == 200, r
        assert r.json() == {"ok": True, "revision": end, "compact_revision": end, "compacted": True}
        cli = [sys.executable, "-m", "raftnode.cli", "compact", "--endpoint", c.url(follower, "")]
        shown = subprocess.run([*cli, str(end - 3)], capture_output=True, text=True, timeout=30)
        assert shown.returncode == 0, shown.stderr
        assert f"already compacted: history kept after revision {end}" in shown.stdout
        shown = subprocess.run(
            [*cli, str(end), "--json"], capture_output=True, text=True, timeout=30
        )
        assert shown.returncode == 0 and json.loads(shown.stdout)["compact_revision"] == end
        refused = subprocess.run([*cli, "0"], capture_output=True, text=True, timeout=30)
        assert refused.returncode == 1 and "HTTP 400" in refused.stderr
        ahead = c.admin(follower, "POST", "/compact", {"revision": end + 100})
        assert ahead.status == 409 and f"current revision {end};" in ahead.json()["message"]

        behind.read_all(until=20)
        assert behind.status == 200
        kinds = [e for e, _, _ in behind.events]
        assert kinds[-1] == "compacted", kinds[-5:]
        assert behind.events[-1][2] == {"error": "compacted", "compact_revision": end}
        assert 0 < len(behind.changes()) < 1500  # never a silent gap: what came is a prefix
        revisions = sorted({r for r, _, _ in behind.changes()})
        assert revisions == list(range(first, first + len(revisions)))

        late = http("GET", c.url(follower, f"/watch?prefix=&start_revision={first}"))
        assert late.status == 410, late
        assert late.json()["compact_revision"] == end
        c.wait_for(
            "every node compacted",
            lambda: all(
                metric(c, n, "raftnode_history_compact_revision ") == end for n in (1, 2, 3)
            ),
        )
        reason = 'raftnode_watchers_cancelled_total{reason="compacted"} '
        assert metric(c, follower, reason) == 1.0
        assert metric(c, follower, "raftnode_watchers ") == 0.0
        assert metric(c, follower, "raftnode_watch_events_sent_total ") >= len(behind.changes())
