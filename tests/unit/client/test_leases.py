"""Leases, the keep-alive's schedule and loss reporting, and the lock/election ordering, as
the client builds and reads them (fake transports; no cluster)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from raftnode.cli import main
from raftnode.client import KeyValue, LeaseNotFound, LeaseStatus, Unavailable
from raftnode.client.concurrency import contender_key, in_order, key_prefix, predecessor
from raftnode.client.lease import Lease, RenewalSchedule
from raftnode.client.lease_ops import MAX_PICKED_ID
from tests.unit.client.fakes import RESET, answer
from tests.unit.client.test_client_retries import make


def lease_answer(lease: int, ttl: int = 5) -> object:
    return answer(200, {"id": lease, "ttl": ttl, "granted_ttl": ttl})


def test_a_grant_names_its_own_id_and_a_retry_finding_it_granted_returns_it() -> None:
    client, transport, _ = make(
        {8081: [RESET, answer(409, {"error": "lease_exists", "message": "exists"})]}
    )
    lease = client.grant_lease(5, keep_alive=False)
    first, retry = [s for s in transport.sent if s.endpoint.endswith(":8081")]
    assert first.body == retry.body and first.headers["Idempotency-Key"]
    sent = json.loads(first.body or b"")
    assert sent["ttl"] == 5 and 1 <= sent["id"] <= MAX_PICKED_ID
    assert (lease.id, lease.ttl) == (sent["id"], 5)


def test_a_bad_ttl_or_lease_id_sends_nothing() -> None:
    client, transport, _ = make({})
    for bad in (0, -1, 2.5, 31_536_001, True):
        with pytest.raises(ValueError, match="TTL"):
            client.grant_lease(bad, keep_alive=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lease"):
        client.put("k", "v", lease=0)
    with pytest.raises(ValueError, match="lease id"):
        client.revoke_lease(-3)
    assert transport.sent == []


def test_put_attaches_the_lease_and_revoke_tells_revoked_from_already_gone() -> None:
    gone = answer(404, {"error": "lease_not_found", "message": "lease 9 does not exist", "id": 9})
    client, transport, _ = make(
        {
            8081: [
                answer(200, {"revision": 3, "created": True}),
                answer(200, {"revoked": True}),
                gone,
            ]
        }
    )
    client.put("svc/a", "x", lease=9)
    assert json.loads(transport.sent[0].body or b"")["lease"] == 9
    assert client.revoke_lease(9) is True
    assert client.revoke_lease(9) is False
    assert [(s.method, s.path) for s in transport.sent[1:]] == [("DELETE", "/lease/9")] * 2


def test_lease_reads_are_typed_and_a_missing_lease_raises_lease_not_found() -> None:
    listing = {"leases": [{"id": 4, "ttl": 1.5, "granted_ttl": 3}], "count": 1}
    info = {"id": 4, "ttl": 2.25, "granted_ttl": 3, "keys": ["a"], "key_count": 1}
    gone = answer(404, {"error": "lease_not_found", "message": "gone", "id": 4})
    client, _, _ = make({8081: [answer(200, listing), answer(200, info), gone]})
    assert client.leases() == [LeaseStatus(4, 1.5, 3)]
    assert client.lease_info(4) == LeaseStatus(4, 2.25, 3, ("a",), 1)
    with pytest.raises(LeaseNotFound) as e:
        client.lease_keep_alive(4)
    assert e.value.lease == 4


def test_the_schedule_renews_at_a_third_retries_soon_and_expires_at_the_ttl_from_sending() -> None:
    s = RenewalSchedule(ttl=3.0, renewed_at=100.0)
    assert s.next_attempt() == 101.0 and s.deadline == 103.0
    s.failed(101.2)
    assert s.next_attempt() == pytest.approx(101.5)  # min(ttl / 10, 0.5) after the failure
    assert not s.expired(102.9) and s.expired(103.0)
    s.renewed(101.6)
    assert s.deadline == pytest.approx(104.6) and s.failed_at is None
    s.renewed(101.0)  # an older keep-alive answered late moves nothing back
    assert s.deadline == pytest.approx(104.6)


class ScriptedLeaseClient:
    """Answers keep-alives with ``error`` (or success when None)."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.calls = 0

    def lease_keep_alive(self, lease: int, *, timeout: float | None = None) -> LeaseStatus:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return LeaseStatus(lease, 1.0, 1)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (LeaseNotFound(404, "lease_not_found", "gone", {}), "no longer holds"),
        (Unavailable("no node"), "within the TTL"),
    ],
)
def test_a_lease_that_cannot_be_renewed_is_reported_lost_once(
    error: Exception, reason: str
) -> None:
    fake = ScriptedLeaseClient(error)
    lost: list[Lease] = []
    reported = threading.Event()

    def on_lost(lease: Lease) -> None:
        lost.append(lease)
        reported.set()

    lease = Lease(fake, LeaseStatus(8, 1.0, 1), time.monotonic(), on_lost=on_lost)  # type: ignore[arg-type]
    assert reported.wait(10)
    assert lease.lost.is_set() and not lease.alive and lease.remaining() == 0
    assert reason in (lease.lost_reason or "")
    lease.close()
    assert lost == [lease]


def test_a_renewed_lease_stays_alive_and_close_stops_the_keep_alives() -> None:
    fake = ScriptedLeaseClient(None)
    lease = Lease(fake, LeaseStatus(8, 1.0, 1), time.monotonic())  # type: ignore[arg-type]
    deadline = time.monotonic() + 10
    while fake.calls < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake.calls >= 3 and lease.alive and not lease.lost.is_set()
    lease.close()
    calls = fake.calls
    time.sleep(0.5)
    assert fake.calls == calls and not lease.alive and not lease.lost.is_set()


def kv(key: str, create_revision: int) -> KeyValue:
    return KeyValue(key, "", create_revision, create_revision, 1)


def test_the_holder_is_the_lowest_create_revision_and_each_waiter_follows_the_one_before() -> None:
    items = [kv("l/c", 30), kv("l/a", 12), kv("l/b", 20)]
    assert [k.key for k in in_order(items)] == ["l/a", "l/b", "l/c"]
    assert predecessor(items, 12) is None
    assert predecessor(items, 30) == kv("l/b", 20)
    assert predecessor(items, 25) == kv("l/b", 20)  # its own key may be missing from a page
    assert contender_key(key_prefix("locks/job/"), 255) == "locks/job/00000000000000ff"
    for bad in ("", "/", "//"):
        with pytest.raises(ValueError, match="name"):
            key_prefix(bad)


def test_the_lock_command_needs_a_command_after_the_separator(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as e:
        main(["lock", "jobs", "--ttl", "3", "sleep", "1"])
    assert e.value.code == 2
    assert "after --" in capsys.readouterr().err
    assert main(["lock", "jobs", "--json", "--"]) == 2
    assert "give the command" in json.loads(capsys.readouterr().err)["message"]
    with pytest.raises(SystemExit):
        main(["lease", "grant", "0"])
    with pytest.raises(SystemExit):
        main(["lock", "jobs", "--ttl", "x", "--", "true"])
