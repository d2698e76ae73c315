"""Hostile HTTP clients against real nodes: each probe gets its bounded answer, changes nothing
in the store, and a well-behaved client on the side keeps being served meanwhile.

The cluster runs with shorter deadlines and a smaller per-address cap than the defaults so each
probe takes seconds; the code paths are the ones the defaults take.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from typing import cast

import pytest

from tests.integration.cluster import Cluster, http, running

HEADER_TIMEOUT_MS = 2000
PER_ADDRESS = 32
WELL_BEHAVED_BOUND = 2.0
"""Seconds the well-behaved client's slowest request may take (generous: a shared machine)."""
MIN_REQUESTS = 10


@pytest.fixture(scope="module")
def hostile_cluster() -> Iterator[Cluster]:
    limits = {
        "header_timeout_ms": HEADER_TIMEOUT_MS,
        "body_timeout_ms": HEADER_TIMEOUT_MS,
        "max_connections_per_address": PER_ADDRESS,
    }
    with running(limits=limits) as c:
        leader = c.leader()
        assert c.put(leader, "sentinel", "still-here").status == 200
        yield c


def store_revision(c: Cluster, node: int) -> int:
    r = http("GET", c.url(node, "/kv?prefix=&limit=1"))
    assert r.status == 200, r
    return int(r.json()["revision"])


class WellBehavedClient:
    """Reads ``sentinel`` from one node every 20 ms on its own connections (from 127.0.0.1),
    recording every status and latency."""

    def __init__(self, c: Cluster, node: int) -> None:
        self._url = c.url(node, "/kv/sentinel?consistency=stale")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.latencies: list[float] = []
        self.statuses: list[int] = []

    def _run(self) -> None:
        deadline = time.monotonic() + 120  # bounded even if never stopped
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            r = http("GET", self._url, timeout=10.0)
            self.latencies.append(time.monotonic() - started)
            self.statuses.append(r.status)
            self._stop.wait(0.02)

    def __enter__(self) -> WellBehavedClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        deadline = time.monotonic() + 5.0  # a fast probe still sees a few of its requests
        while len(self.statuses) < MIN_REQUESTS and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stop.set()
        self._thread.join(timeout=15)

    def assert_served(self) -> None:
        assert len(self.statuses) >= MIN_REQUESTS, self.statuses
        assert set(self.statuses) == {200}, self.statuses
        assert max(self.latencies) < WELL_BEHAVED_BOUND, sorted(self.latencies)[-5:]


def connect(c: Cluster, node: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(10.0)
    sock.connect(("127.0.0.1", c.node(node).ports.client))
    return sock


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes (a reset counts as closed), and when."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return data, time.monotonic()
        if not chunk:
            return data, time.monotonic()
        data += chunk
    raise AssertionError(f"the server did not close within {timeout}s; got {data[:200]!r}")


def answers(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        out.append((int(lines[0].split()[1]), headers, rest[:length]))
        data = rest[length:]
    return out


def metric(c: Cluster, node: int, series: str) -> float:
    for line in c.health(node, "/metrics").body.decode().splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    return 0.0


def refusals(c: Cluster, node: int, reason: str) -> float:
    return metric(c, node, f'raftnode_http_refusals_total{{listener="client",reason="{reason}"}}')


def test_ten_megabytes_of_headers_get_431_fast_and_the_connection_closes(
    hostile_cluster: Cluster,
) -> None:
    c = hostile_cluster
    node = c.leader()
    before = store_revision(c, node)
    header_lines = b"".join(b"X-Pad-%05d: %s\r\n" % (i, b"h" * 1000) for i in range(10_000))
    with WellBehavedClient(c, node) as client:
        sock = connect(c, node)
        started = time.monotonic()

        def send() -> None:
            with contextlib.suppress(OSError):  # the server closes while we still send
                sock.sendall(b"GET /kv/sentinel HTTP/1.1\r\nHost: x\r\n" + header_lines + b"\r\n")

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        data, closed_at = read_until_closed(sock, timeout=10.0)
        sender.join(timeout=10)
        sock.close()
        time.sleep(0.3)
    [(status, headers, body)] = answers(data)
    assert status == 431
    assert json.loads(body)["error"] == "headers_too_large"
    assert "limits.max_header_bytes" in json.loads(body)["message"]
    assert headers["connection"] == "close"
    assert closed_at - started < 5.0
    assert store_revision(c, node) == before
    assert refusals(c, node, "headers_too_large") >= 1
    client.assert_served()


def test_slowloris_connections_are_dropped_at_the_header_deadline(
    hostile_cluster: Cluster,
) -> None:
    c = hostile_cluster
    node = c.leader()
    before = store_revision(c, node)
    trickle = b"GET /kv/sentinel HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 1000
    count = 20  # from another source address, under the per-address cap
    with WellBehavedClient(c, node) as client:
        socks = [connect(c, node, "127.0.0.3") for _ in range(count)]
        started = time.monotonic()
        selector = selectors.DefaultSelector()
        for s in socks:
            s.setblocking(False)
            selector.register(s, selectors.EVENT_READ)
        received: dict[socket.socket, bytes] = {s: b"" for s in socks}
        closed: dict[socket.socket, float] = {}
        sent = 0
        next_byte = started
        while len(closed) < count and time.monotonic() - started < HEADER_TIMEOUT_MS / 1000 + 8:
            if time.monotonic() >= next_byte and sent < len(trickle):
                for s in socks:
                    if s not in closed:
                        with contextlib.suppress(OSError):
                            s.send(trickle[sent : sent + 1])
                sent += 1
                next_byte += 0.5  # one byte every half second: far slower than any client
            for key, _ in selector.select(timeout=0.05):
                s = cast(socket.socket, key.fileobj)
                try:
                    chunk = s.recv(65536)
                except (ConnectionResetError, BlockingIOError):
                    chunk = b""
                if chunk:
                    received[s] += chunk
                else:
                    closed[s] = time.monotonic() - started
                    selector.unregister(s)
        for s in socks:
            s.close()
        selector.close()
    assert len(closed) == count, f"{count - len(closed)} slow connections still open"
    assert max(closed.values()) < HEADER_TIMEOUT_MS / 1000 + 3
    assert sent < len(trickle)  # cut off long before the trickle would have finished
    assert all(answers(data)[0][0] == 408 for data in received.values())
    assert store_revision(c, node) == before
    assert refusals(c, node, "header_timeout") >= count
    client.assert_served()


def test_connections_over_the_per_address_cap_get_503_with_retry_after(
    hostile_cluster: Cluster,
) -> None:
    c = hostile_cluster
    node = c.leader()
    before = store_revision(c, node)
    refused_before = refusals(c, node, "max_connections_per_address")
    with WellBehavedClient(c, node) as client:
        held = [connect(c, node, "127.0.0.2") for _ in range(PER_ADDRESS)]
        time.sleep(0.2)
        extra = connect(c, node, "127.0.0.2")
        extra.sendall(b"POST /kv HTTP/1.1\r\nContent-Length: 25\r\n\r\n")
        extra.sendall(b'{"key":"cap","value":"x"}')
        data, _ = read_until_closed(extra, timeout=10.0)
        extra.close()
        # One of the held connections still works: the cap refuses only the one over it.
        held[0].sendall(b"GET /kv/sentinel HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        still_served, _ = read_until_closed(held[0], timeout=10.0)
        for s in held:
            s.close()
        time.sleep(0.3)
    [(status, headers, body)] = answers(data)
    assert status == 503
    assert headers["retry-after"] == "1"
    assert json.loads(body)["error"] == "too_many_connections"
    assert "limits.max_connections_per_address" in json.loads(body)["message"]
    assert answers(still_served)[0][0] == 200
    assert c.get(node, "cap").status == 404
    assert store_revision(c, node) == before
    assert refusals(c, node, "max_connections_per_address") == refused_before + 1
    client.assert_served()


def test_a_write_pipelined_before_a_malformed_request_is_answered_first(
    hostile_cluster: Cluster,
) -> None:
    c = hostile_cluster
    node = c.leader()
    before = store_revision(c, node)
    body = b'{"key":"pipelined","value":"applied"}'
    with WellBehavedClient(c, node) as client:
        sock = connect(c, node)
        sock.sendall(
            b"POST /kv HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s"
            % (len(body), body)
            + b"GET /kv/\x00broken HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        data, _ = read_until_closed(sock, timeout=15.0)
        sock.close()
    got = answers(data)
    assert [status for status, _, _ in got] == [200, 400], got
    assert json.loads(got[0][2])["key"] == "pipelined"
    assert json.loads(got[1][2])["error"] == "bad_request"
    assert got[1][1]["connection"] == "close"
    assert c.get(node, "pipelined").json()["value"] == "applied"
    assert store_revision(c, node) == before + 1  # the write, and nothing else
    client.assert_served()


@pytest.mark.parametrize(
    ("request_line", "status", "error"),
    [
        (b"TRACE /kv/sentinel HTTP/1.1", 405, "method_not_allowed"),
        (b"FROB /kv/sentinel HTTP/1.1", 501, "not_implemented"),
    ],
)
def test_trace_and_unknown_methods_get_json_refusals_and_change_nothing(
    hostile_cluster: Cluster, request_line: bytes, status: int, error: str
) -> None:
    c = hostile_cluster
    node = c.leader()
    before = store_revision(c, node)
    with WellBehavedClient(c, node) as client:
        sock = connect(c, node)
        sock.sendall(request_line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
        data, _ = read_until_closed(sock, timeout=10.0)
        sock.close()
        time.sleep(0.3)
    [(got_status, headers, body)] = answers(data)
    assert got_status == status
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"] == error
    assert c.get(node, "sentinel").json()["value"] == "still-here"
    assert store_revision(c, node) == before
    client.assert_served()
