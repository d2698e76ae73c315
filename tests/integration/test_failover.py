"""Crashes, pauses and shutdowns of real processes: leaders change, acknowledged writes stay."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from http.client import HTTPConnection

from tests.integration.cluster import Cluster, http, running

ELECTION_TIMEOUT = 0.5  # tick_ms 50 * election_ticks 10: the minimum election timeout


class Writer(threading.Thread):
    """Writes key-0, key-1, ... round-robin through the given nodes; records what was acked."""

    def __init__(self, c: Cluster, nodes: list[int], prefix: str) -> None:
        super().__init__(daemon=True)
        self.c, self.nodes, self.prefix = c, nodes, prefix
        self.acked: dict[str, str] = {}
        self.stop = threading.Event()
        self.i = 0

    def run(self) -> None:
        while not self.stop.is_set():
            key = f"{self.prefix}-{self.i}"
            node = self.nodes[self.i % len(self.nodes)]
            r = self.c.put(node, key, str(self.i), timeout=6.0)
            if r.status == 200:
                self.acked[key] = str(self.i)
            self.i += 1
            time.sleep(0.005)


def assert_all_present(c: Cluster, node: int, acked: dict[str, str]) -> None:
    items = {}
    prefix = next(iter(acked)).rsplit("-", 1)[0] + "-"
    r = http("GET", c.url(node, f"/kv?prefix={prefix}&limit=10000"))
    assert r.status == 200, r
    items = {it["key"]: it["value"] for it in r.json()["items"]}
    missing = {k: v for k, v in acked.items() if items.get(k) != v}
    assert not missing, f"node {node} lost acknowledged writes: {sorted(missing)[:10]}"


def test_kill_leader_new_leader_and_no_acknowledged_write_lost(cluster: Cluster) -> None:
    c = cluster
    old = c.leader()
    writer = Writer(c, [1, 2, 3], "k9")
    writer.start()
    try:
        c.wait_for("some writes", lambda: len(writer.acked) >= 30, timeout=20)
        c.kill(old)
        killed_at = time.monotonic()
        rest = [i for i in (1, 2, 3) if i != old]
        new = c.leader(timeout=10, among=rest)
        assert new != old
        acked_at_kill = len(writer.acked)
        c.wait_for("writes resume", lambda: len(writer.acked) >= acked_at_kill + 20, timeout=15)
        assert time.monotonic() - killed_at < 15
        c.start(old)
        c.wait_for(
            "old leader rejoins", lambda: c.health(old, "/replica").status == 200, timeout=15
        )
    finally:
        writer.stop.set()
        writer.join(timeout=10)
    for node in (1, 2, 3):
        assert_all_present(c, node, writer.acked)


def test_a_write_at_a_follower_waits_out_a_silent_leader_instead_of_forwarding_into_it(
    cluster: Cluster,
) -> None:
    """A leader cut off without a reset (here: stopped) goes quiet. A follower that forwarded
    to it would hang until the request timed out (504 after 5 s). One that notices the silence
    gives the forward up: a keyed write goes on to the next leader (it cannot apply twice), an
    unkeyed one gets its 504 at once."""
    c = cluster
    old = c.leader()
    follower = next(i for i in (1, 2, 3) if i != old)
    c.signal(old, signal.SIGSTOP)
    try:
        started = time.monotonic()
        keyed = c.put(follower, "silent-keyed", "yes", timeout=8.0, idempotency_key="silent-1")
        keyed_took = time.monotonic() - started
        started = time.monotonic()
        unkeyed = c.put(follower, "silent-unkeyed", "yes", timeout=8.0)
        unkeyed_took = time.monotonic() - started
    finally:
        c.signal(old, signal.SIGCONT)
    assert keyed.status == 200, keyed
    # An election takes 0.5-1 s; forwarding into the silent leader would take the full 5 s.
    assert keyed_took < 4.0, keyed_took
    assert unkeyed.status in (200, 504), unkeyed
    assert unkeyed_took < 4.0, unkeyed_took


def test_paused_leader_is_replaced_and_serves_no_stale_read(cluster: Cluster) -> None:
    c = cluster
    old = c.leader()
    assert c.put(old, "color", "red").status == 200
    c.signal(old, signal.SIGSTOP)
    try:
        rest = [i for i in (1, 2, 3) if i != old]
        new = c.leader(timeout=10, among=rest)
        assert c.put(new, "color", "blue").status == 200
        old_term = c.status(new)["term"]
    finally:
        c.signal(old, signal.SIGCONT)
    # From the moment it resumes, the old leader must never answer a linearizable read with the
    # value it had: either the new value or an error.
    deadline = time.monotonic() + 5
    seen = []
    while time.monotonic() < deadline:
        r = c.get(old, "color")
        seen.append(r.status)
        if r.status == 200:
            assert r.json()["value"] == "blue", "stale linearizable read from the deposed leader"
        if r.status == 200 and c.health(old, "/primary").status == 503:
            break
        time.sleep(0.02)
    assert 200 in seen
    c.wait_for("old leader steps down", lambda: c.status(old)["role"] == "follower", timeout=10)
    assert c.status(old)["term"] >= old_term
    assert c.leader(timeout=10) == new
    assert c.get(old, "color", "lease").json()["value"] == "blue"


def test_kill_all_and_restart_keeps_every_acknowledged_write(cluster: Cluster) -> None:
    c = cluster  # snapshots every 50 entries: recovery goes through snapshot + log
    acked = {}
    leader = c.leader()
    for i in range(180):
        key = f"dur-{i}"
        r = c.put([1, 2, 3][i % 3], key, f"v{i}")
        assert r.status == 200, r
        acked[key] = f"v{i}"
    assert "log compacted" in c.log(leader)
    for node in (1, 2, 3):
        c.kill(node)
    c.start()
    c.leader(timeout=15)
    for node in (1, 2, 3):
        assert_all_present(c, node, acked)


def test_sigterm_on_leader_hands_leadership_over(cluster: Cluster) -> None:
    c = cluster
    old = c.leader()
    assert c.put(old, "before", "x").status == 200
    term = c.status(old)["term"]
    c.signal(old, signal.SIGTERM)
    sent_at = time.monotonic()
    rest = [i for i in (1, 2, 3) if i != old]
    new = c.leader(timeout=10, among=rest)
    took = time.monotonic() - sent_at
    assert c.wait_exit(old, timeout=10) == 0
    log = c.log(old)
    assert "leadership transferred" in log, log[-2000:]
    # A transfer elects the target in the very next term, with no election timeout elapsing.
    assert c.status(new)["term"] == term + 1
    print(
        f"leadership handed over in {took * 1000:.0f} ms (election timeout >= {ELECTION_TIMEOUT}s)"
    )
    assert c.put(new, "after", "y").status == 200
    assert c.get(new, "before").json()["value"] == "x"


def test_without_quorum_writes_get_503_and_unknown_outcomes_504() -> None:
    c = Cluster(request_timeout_ms=2000)
    try:
        c.start()
        leader = c.leader()
        assert c.put(leader, "q", "1").status == 200
        followers = [i for i in (1, 2, 3) if i != leader]
        for f in followers:
            c.signal(f, signal.SIGSTOP)
        # The leader accepts the proposal but cannot commit it: the outcome is unknown.
        r = c.put(leader, "q", "2", timeout=10)
        assert r.status == 504, r
        assert r.json()["error"] == "outcome_unknown"
        # Once it noticed it lost its quorum it steps down: no leader, 503 with Retry-After.
        c.wait_for(
            "leader steps down", lambda: c.health(leader, "/primary").status == 503, timeout=10
        )
        r = c.put(leader, "q", "3", timeout=10)
        assert r.status == 503 and "Retry-After" in r.headers, r
        r = c.get(leader, "q")
        assert r.status == 503 and "Retry-After" in r.headers, r
        assert c.get(leader, "q", "stale").status == 200
        for f in followers:
            c.signal(f, signal.SIGCONT)
        c.leader(timeout=15)
        assert c.get(leader, "q").status == 200
    finally:
        for f in (1, 2, 3):
            with contextlib.suppress(Exception):
                c.signal(f, signal.SIGCONT)
        c.close()


def test_follower_far_behind_catches_up_from_a_snapshot(cluster: Cluster) -> None:
    """A follower that missed more entries than the leader keeps gets a snapshot (chunked)."""
    from concurrent.futures import ThreadPoolExecutor

    c = cluster  # snapshots every 50 entries; the core keeps 1000 entries past a snapshot
    leader = c.leader()
    lagging = next(i for i in (1, 2, 3) if i != leader)
    c.kill(lagging)
    live = [i for i in (1, 2, 3) if i != lagging]

    def write(i: int) -> tuple[str, str]:
        r = c.put_retrying(live, f"snap-{i}", f"v{i}")
        assert r.status == 200
        return f"snap-{i}", f"v{i}"

    with ThreadPoolExecutor(max_workers=16) as pool:
        acked = dict(pool.map(write, range(1300)))
    c.start(lagging)
    c.wait_for(
        "lagging node installs a snapshot",
        lambda: "snapshot installed" in c.log(lagging),
        timeout=30,
    )
    # /replica?lag=0 only knows the commit index the follower has heard of so far: wait for
    # the leader's own commit index instead.
    target = c.status(c.leader(among=live))["commit"]
    c.wait_for(
        "lagging node caught up",
        lambda: c.status(lagging)["applied"] >= target,
        timeout=30,
    )
    r = http("GET", c.url(lagging, "/kv?prefix=snap-&limit=10000&consistency=stale"))
    items = {it["key"]: it["value"] for it in r.json()["items"]}
    assert items == acked


def test_a_forwarded_write_that_may_have_reached_the_leader_is_never_answered_503(
    cluster: Cluster,
) -> None:
    """Found by `make chaos`: a keyed write forwarded to a leader that then went silent, with no
    new leader to take it (no quorum), was answered 503 ("nothing was done") when the deadline
    passed, and applied once the leader resumed. A write that may have reached a leader must
    end in 504 (outcome unknown); a 503 must mean it never applies."""
    c = cluster
    leader = c.leader()
    entry, other = (i for i in (1, 2, 3) if i != leader)
    c.kill(other)  # no quorum without the leader: nobody else can take the write
    answers: list[tuple[str, int]] = []
    try:
        for attempt in range(3):
            key = f"maybe-sent-{attempt}"
            c.signal(leader, signal.SIGSTOP)
            try:  # sent within a heartbeat of the pause: the entry node still forwards it
                r = c.put(entry, key, "v", timeout=15.0, idempotency_key=f"maybe-{attempt}")
            finally:
                c.signal(leader, signal.SIGCONT)
            answers.append((key, r.status))
            assert r.status in (200, 503, 504), r
            time.sleep(0.5)
    finally:
        c.start(other)
    c.leader(timeout=20)
    time.sleep(1.0)  # anything the resumed leader received is applied by now
    for key, status in answers:
        if status == 503:
            applied = c.get(entry, key)
            assert applied.status == 404, f"{key} answered 503 but was applied: {applied}"


def test_a_restarted_follower_is_not_ready_while_it_is_far_behind() -> None:
    """Found by the long `make chaos` run (a rolling restart): a follower that restarted while
    the others kept committing answered /readiness 200 (lag 0) about 1,600 entries behind, so
    HAProxy's read pool took it back at once and a stale read through the VIP went back in time.
    The leader's heartbeat caps ``commit`` at what it knows the follower holds (where it stood
    when it stopped); the follower must count its lag from the leader's own commit index."""
    with running() as c:
        leader = c.leader()
        follower = next(i for i in (1, 2, 3) if i != leader)
        writers = [Writer(c, [leader], f"restart-{n}") for n in range(4)]
        for w in writers:
            w.start()
        gaps: list[int] = []
        try:
            for _ in range(3):
                time.sleep(1.0)
                c.kill(follower)
                time.sleep(3.0)  # the other two commit several hundred entries meanwhile
                c.start(follower)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    commit = c.status(leader)["commit"]
                    if c.health(follower, "/readiness").status == 200:
                        gaps.append(commit - c.status(follower)["applied"])
                        break
                    time.sleep(0.01)
                else:
                    raise AssertionError("the restarted follower never became ready")
        finally:
            for w in writers:
                w.stop.set()
            for w in writers:
                w.join(10)
        written = sum(w.i for w in writers)
        assert written > 1000, f"only {written} writes: the follower was never far behind"
        # Ready means at most REPLICA_MAX_LAG (100) entries behind; writes land meanwhile.
        assert max(gaps) < 400, f"ready while this many entries behind the leader: {gaps}"


def test_requests_on_kept_alive_connections_during_a_shutdown_are_never_a_500() -> None:
    """Found by the long `make chaos` run (a rolling restart): a balancer keeps its connections
    to a node open, and a request that arrived on one after the node had closed its store was
    answered 500 ("Cannot operate on a closed database"). A stopping node answers 503 (HAProxy
    retries it on another node) and closes its store only after its connections."""
    with running() as c:
        stop = threading.Event()
        statuses: dict[int, int] = {}

        def keep_asking(node: int, path: str) -> None:
            conn: HTTPConnection | None = None
            while not stop.is_set():
                try:
                    if conn is None:
                        conn = HTTPConnection("127.0.0.1", c.node(node).ports.client, timeout=3)
                    conn.request("GET", path)
                    answer = conn.getresponse()
                    answer.read()
                    statuses[answer.status] = statuses.get(answer.status, 0) + 1
                except OSError:  # refused, reset: the node is gone
                    conn = None
                    time.sleep(0.01)

        for node in (1, 2, 3):
            stop.clear()
            askers = [
                threading.Thread(target=keep_asking, args=(node, f"/kv/k{n}?consistency=stale"))
                for n in range(4)
            ]
            for asker in askers:
                asker.start()
            time.sleep(0.5)
            c.signal(node, signal.SIGTERM)
            assert c.wait_exit(node, 20) == 0
            stop.set()
            for asker in askers:
                asker.join(10)
            log = c.log(node)
            c.start(node)
            c.leader()
            assert "request handler failed" not in log, log[-3000:]
        assert statuses.get(404, 0) > 100, statuses
        assert 500 not in statuses, statuses
