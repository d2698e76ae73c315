"""A fault both balancer roles are tested against (tests/haproxy, tests/nginx): keyed writes
sent through the balancer while the leader is stalled (SIGSTOP) and no other node can take
them. Found by the long ``make chaos`` run with full disks: the balancer sent the write again
after the first attempt reached the stalled leader, relayed the next node's 503 ("nothing was
done"), and the write applied once the leader resumed."""

from __future__ import annotations

import signal
import time

from tests.integration.cluster import Cluster, Response, http


def keyed_writes_to_a_stalled_leader(
    cluster: Cluster, base_url: str, attempts: int = 2
) -> list[tuple[str, Response, int]]:
    """(key, the balancer's answer, GET status of the key afterwards) for each write. The
    cluster has all its nodes and a leader again on return."""
    leader = cluster.leader()
    entry, other = (i for i in (1, 2, 3) if i != leader)
    cluster.kill(other)  # without the leader nobody can take the write
    answers: list[tuple[str, Response]] = []
    try:
        for attempt in range(attempts):
            key = f"stalled-{attempt}-{time.monotonic_ns()}"
            cluster.signal(leader, signal.SIGSTOP)
            try:
                r = http(
                    "PUT",
                    f"{base_url}/kv/{key}",
                    {"value": "v"},
                    timeout=30.0,
                    headers={"Idempotency-Key": key},
                )
            finally:
                cluster.signal(leader, signal.SIGCONT)
            answers.append((key, r))
            cluster.leader(timeout=20, among=[leader])
    finally:
        cluster.start(other)
    cluster.leader(timeout=20)
    time.sleep(1.0)  # anything the resumed leader read is applied by now
    return [(key, r, http("GET", cluster.url(entry, f"/kv/{key}")).status) for key, r in answers]


def assert_never_nothing_was_done_and_applied(results: list[tuple[str, Response, int]]) -> None:
    for key, r, applied in results:
        print(key, r.status, r.body[:120], "applied:", applied)
        assert r.status in (200, 502, 503, 504), (key, r)
        assert r.status != 503 or applied == 404, f"{key} answered {r} but applied"
