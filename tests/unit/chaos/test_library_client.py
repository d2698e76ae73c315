"""The register/set workload through ``raftnode.client``: how the library's errors (faked here)
map to outcomes, and what a library client records, on a scripted transport."""

from __future__ import annotations

import asyncio
import json

import pytest

from chaos.http_client import Answer
from chaos.library_client import (
    LibraryClient,
    classify_library_read,
    classify_library_write,
)
from chaos.workload import Client, Recorder, WorkloadConfig
from raftnode.client import (
    BadRequest,
    CompareFailed,
    DeadlineExceeded,
    IdempotencyKeyReused,
    NotFound,
    QuotaExceeded,
    ServerError,
    Unavailable,
)
from raftnode.client.retry import AttemptTimedOut
from tests.unit.client.fakes import (
    RESET,
    FakeAsyncTransport,
    FakeClock,
    FakeTransport,
    Step,
    answer,
)

LOST = Answer(0, sent=True, error="lost: reset")
REFUSED = Answer(0, sent=False, error="connect: refused")
HAPROXY_503 = Answer(503, True, body=b"<html>No server is available</html>")
RAFT_503 = Answer(503, True, body=b'{"error": "unavailable"}')


def cas_mismatch() -> CompareFailed:
    return CompareFailed(409, "cas_mismatch", "no match", {"current_value": "x", "exists": True})


def disk_full() -> QuotaExceeded:
    return QuotaExceeded(507, "disk_full", "full", {})


@pytest.mark.parametrize(
    ("error", "attempts", "outcome"),
    [
        (None, [], "ok"),
        (None, [LOST], "ok"),
        (cas_mismatch(), [], "fail"),
        # Decided when the command applies: a retry finds the first attempt's outcome.
        (cas_mismatch(), [LOST], "fail"),
        (NotFound(404, "not_found", "gone", {"key": "k"}), [LOST], "fail"),
        (IdempotencyKeyReused(422, "idempotency_key_reused", "", {}), [LOST], "fail"),
        (BadRequest(400, "bad_key", "bad", {}), [], "fail"),
        (Unavailable("no node", maybe_applied=True, idempotency_key="i"), [LOST], "info"),
        (Unavailable("no node", maybe_applied=False), [REFUSED, RAFT_503], "fail"),
        (DeadlineExceeded("late", maybe_applied=True, idempotency_key="i"), [LOST], "info"),
        (DeadlineExceeded("late", maybe_applied=False), [REFUSED], "fail"),
        # The library trusts any 503; the raw path does not trust HAProxy's.
        (Unavailable("no node", maybe_applied=False), [HAPROXY_503], "info"),
        (disk_full(), [], "fail"),
        (disk_full(), [LOST], "info"),  # refused before proposing: the first may apply
        (QuotaExceeded(507, "quota_exceeded", "", {}), [], "info"),  # as raw HTTP's 507
        (ServerError(500, "internal", "", {}), [], "info"),
        (OSError("socket gone"), [], "info"),
        (TimeoutError(), [], "info"),
    ],
)
def test_library_write_outcomes(
    error: BaseException | None, attempts: list[Answer], outcome: str
) -> None:
    assert classify_library_write(error, attempts) == outcome


@pytest.mark.parametrize(
    ("error", "attempts", "outcome"),
    [
        (None, [], "ok"),
        (NotFound(404, "not_found", "", {}), [], "ok"),
        (Unavailable("no node"), [LOST], "info"),
        (DeadlineExceeded("late"), [LOST], "info"),
        (Unavailable("no node"), [REFUSED, RAFT_503], "fail"),
        (ServerError(500, "internal", "", {}), [], "fail"),
        (BadRequest(400, "bad_consistency", "", {}), [], "fail"),
        (RuntimeError("?"), [], "info"),
    ],
)
def test_library_read_outcomes(
    error: BaseException | None, attempts: list[Answer], outcome: str
) -> None:
    assert classify_library_read(error, attempts) == outcome


ENDPOINTS = ("http://127.0.0.1:1", "http://127.0.0.1:2")


def library(
    scripts: dict[int, list[Step]], timeout: float = 2.0
) -> tuple[LibraryClient, FakeTransport]:
    fake = FakeTransport(FakeClock(), scripts)
    return LibraryClient(ENDPOINTS, timeout, 1, transport=FakeAsyncTransport(fake)), fake


def sent_body(fake: FakeTransport, n: int) -> dict[str, object]:
    body = fake.sent[n].body
    assert body is not None
    result = json.loads(body)
    assert isinstance(result, dict)
    return result


def test_cas_retried_after_a_lost_answer_ends_in_the_replayed_mismatch() -> None:
    lib, fake = library({1: [RESET], 2: [answer(409, {"error": "cas_mismatch"})]})
    done = asyncio.run(lib.write("cas", "k", "v2", None))
    assert done.outcome == "fail"
    assert done.endpoint == ENDPOINTS[1]
    assert done.note.startswith("client attempts=lost,409 CompareFailed: cas_mismatch")
    assert done.note.endswith(" idem")
    # expected None is the library's "absent": prev_value null, on both attempts, one key.
    assert (
        sent_body(fake, 0) == sent_body(fake, 1) == {"key": "k", "value": "v2", "prev_value": None}
    )
    keys = {s.headers["Idempotency-Key"] for s in fake.sent}
    assert len(keys) == 1


def test_library_writes_send_what_each_kind_means() -> None:
    ok = answer(200, {"ok": True, "revision": 9}, idempotent_replayed="true")
    lib, fake = library({1: [ok, ok, ok]})
    assert (
        asyncio.run(lib.write("put", "k", "v", None)).note
        == "client attempts=200 rev=9 replayed idem"
    )
    asyncio.run(lib.write("add", "set/e1", None, None))
    asyncio.run(lib.write("delete", "k", None, None))
    assert sent_body(fake, 0) == {"key": "k", "value": "v"}
    assert sent_body(fake, 1) == {"key": "set/e1", "value": "1", "prev_value": None}
    assert (fake.sent[2].method, fake.sent[2].path) == ("DELETE", "/kv/k")
    with pytest.raises(ValueError, match="unknown write"):
        asyncio.run(lib.write("put", "k", None, None))


def test_a_write_that_never_got_an_answer_is_info_and_one_never_sent_is_fail() -> None:
    lost, _ = library({1: [AttemptTimedOut("slow")] * 50, 2: [AttemptTimedOut("slow")] * 50}, 0.2)
    assert asyncio.run(lost.write("put", "k", "v", None)).outcome == "info"
    refused, _ = library({}, 0.2)
    done = asyncio.run(refused.write("put", "k", "v", None))
    assert done.outcome == "fail"
    assert "Unavailable" in done.note


def test_library_reads_record_value_revision_and_absence() -> None:
    value = answer(200, {"value": "v", "mod_revision": 4})
    lib, fake = library({1: [value, answer(404, {"error": "not_found"})]})
    done = asyncio.run(lib.get("k", "stale"))
    assert (done.outcome, done.result, done.note) == ("ok", "v", "client attempts=200 rev=4")
    assert fake.sent[0].path == "/kv/k?consistency=stale"
    absent = asyncio.run(lib.get("k", "linearizable"))
    assert (absent.outcome, absent.result, absent.note) == ("ok", None, "client attempts=404")


def test_odd_clients_use_the_library_by_default_and_close_it_even_on_failure() -> None:
    def client(number: int, library: bool | None) -> Client:
        config = WorkloadConfig(endpoints=ENDPOINTS, run_id="t", client_library=library)
        return Client(number, config, Recorder())

    assert [client(n, None).library is not None for n in range(4)] == [False, True, False, True]
    assert client(1, False).library is None and client(0, True).library is not None
    # The library stays on the endpoint that answered last: each client starts on another.
    starts = [client(n, True).library for n in range(3)]
    assert [lib.client.endpoints[0] for lib in starts if lib] == [*ENDPOINTS, ENDPOINTS[0]][:3]

    c = client(1, None)
    fake = FakeTransport(FakeClock())
    assert c.library is not None
    c.library = LibraryClient(ENDPOINTS, 1.0, 1, transport=FakeAsyncTransport(fake))

    async def broken() -> None:
        raise RuntimeError("boom")

    c.one_operation = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(c.run(deadline=float("inf")))
    assert fake.closed


def test_a_library_client_records_operations_like_the_raw_one() -> None:
    config = WorkloadConfig(endpoints=ENDPOINTS, run_id="t", client_library=True)
    recorder = Recorder()
    c = Client(1, config, recorder)
    fake = FakeTransport(
        FakeClock(),
        {1: [answer(200, {"ok": True, "revision": 3}), answer(409, {"error": "cas_mismatch"})]},
    )
    c.library = LibraryClient(ENDPOINTS, 1.0, 1, transport=FakeAsyncTransport(fake))
    asyncio.run(c.write(ENDPOINTS[0], "add", config.set_prefix + "e1", None))
    asyncio.run(c.write(ENDPOINTS[0], "cas", "k", "v", "old"))
    add, cas = recorder.operations
    assert (add.kind, add.key, add.value, add.outcome) == ("add", config.set_prefix, "e1", "ok")
    assert (cas.kind, cas.expected, cas.outcome, cas.endpoint) == (
        "cas",
        "old",
        "fail",
        ENDPOINTS[0],
    )
    assert add.note.startswith("client ") and cas.note.startswith("client ")
