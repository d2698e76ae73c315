"""``Client``'s retry rules against a fake transport and a fake clock: where each attempt goes,
what it carries, how long the client waits, and what a call ends in."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from raftnode.client import (
    AsyncClient,
    BadRequest,
    Client,
    CompareFailed,
    DeadlineExceeded,
    IdempotencyKeyReused,
    NotFound,
    QuotaExceeded,
    RetryPolicy,
    ServerError,
    Unavailable,
)
from tests.unit.client.fakes import (
    REFUSED,
    RESET,
    TIMEOUT,
    FakeAsyncTransport,
    FakeClock,
    FakeTransport,
    answer,
    ok_write,
)

NODES = ["http://n1:8081", "http://n2:8082", "http://n3:8083"]


def make(
    scripts: dict[int, list[object]], endpoints: list[str] | None = None, **options: object
) -> tuple[Client, FakeTransport, FakeClock]:
    clock = FakeClock()
    transport = FakeTransport(clock, scripts)  # type: ignore[arg-type]
    client = Client(
        endpoints or NODES,
        transport=transport,
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(7),
        **options,  # type: ignore[arg-type]
    )
    return client, transport, clock


# -- moving on ----------------------------------------------------------------------------------


def test_a_refused_connection_moves_to_the_next_node_at_once_and_the_client_sticks_to_it() -> None:
    client, transport, clock = make({8082: [ok_write(), answer(200, {"value": "v"})]})
    assert client.put("k", "v").revision == 7
    assert [s.endpoint for s in transport.sent] == ["http://n1:8081", "http://n2:8082"]
    assert clock.sleeps == []
    client.get("k")
    assert transport.sent[-1].endpoint == "http://n2:8082", (
        "the next call starts where the last answered"
    )


def test_a_write_is_resent_with_the_same_idempotency_key_and_body_after_every_failure() -> None:
    client, transport, _ = make(
        {
            8081: [TIMEOUT],
            8082: [RESET],
            8083: [answer(504, {"error": "outcome_unknown", "message": "?"})],
        }
    )
    # n1 again after the round's backoff: the first outcome, replayed.
    transport.scripts[8081].append(ok_write(Idempotent_Replayed="true"))
    result = client.put("k", "v")
    assert len(transport.sent) == 4
    keys = {s.headers["Idempotency-Key"] for s in transport.sent}
    bodies = {s.body for s in transport.sent}
    assert len(keys) == 1 and len(bodies) == 1
    assert json.loads(next(iter(bodies)) or b"") == {"key": "k", "value": "v"}
    assert result.replayed and result.idempotency_key == keys.pop()


def test_the_callers_own_idempotency_key_is_sent_and_a_malformed_one_sends_nothing() -> None:
    client, transport, _ = make({8081: [ok_write()]})
    client.put("k", "v", idempotency_key="order-42")
    assert transport.sent[0].headers["Idempotency-Key"] == "order-42"
    for bad in ("", "has space", "x" * 129, "naïve"):
        with pytest.raises(ValueError, match="idempotency key"):
            client.put("k", "v", idempotency_key=bad)
    assert len(transport.sent) == 1


def test_reads_carry_no_idempotency_key_and_the_token_goes_in_the_authorization_header() -> None:
    client, transport, _ = make(
        {8081: [answer(200, {"value": "v"}, X_Raftnode_Revision="3")]}, token="s3cret"
    )
    kv = client.get("dir/a b", consistency="stale")
    assert kv.value == "v" and kv.mod_revision == 3
    sent = transport.sent[0]
    assert sent.method == "GET" and sent.path == "/kv/dir%2Fa%20b?consistency=stale"
    assert "Idempotency-Key" not in sent.headers
    assert sent.headers["Authorization"] == "Bearer s3cret"


def test_421_and_a_redirect_to_a_configured_node_move_on_but_never_to_a_host_not_given() -> None:
    client, transport, _ = make(
        {
            8081: [answer(421, {"error": "misdirected"})],
            8082: [answer(307, {}, Location="http://n1:8081/kv")],
        }
    )
    transport.scripts[8081].append(answer(307, {}, Location="http://evil:9999/kv"))
    transport.scripts[8082].append(ok_write())
    client.put("k", "v")
    assert [s.endpoint for s in transport.sent] == [
        "http://n1:8081",
        "http://n2:8082",
        "http://n1:8081",
        "http://n2:8082",
    ]


# -- waiting ------------------------------------------------------------------------------------


def test_503_retry_after_is_waited_out_on_a_single_endpoint_within_the_backoff_cap() -> None:
    busy = answer(503, {"error": "unavailable", "message": "no leader"}, Retry_After="1")
    client, transport, clock = make({8080: [busy, busy, ok_write()]}, endpoints=["http://vip:8080"])
    client.put("k", "v")
    assert len(transport.sent) == 3
    assert clock.sleeps == [
        1.0,
        1.0,
    ]  # Retry-After (1 s) over the 50/100 ms backoff, at the 1 s cap


def test_backoff_comes_after_a_full_round_grows_exponentially_jittered_and_capped() -> None:
    policy = RetryPolicy(
        timeout=30.0,
        attempt_timeout=1.0,
        backoff_initial=0.1,
        backoff_max=0.8,
        backoff_multiplier=2,
    )
    client, transport, clock = make({}, retry=policy)
    with pytest.raises(Unavailable) as info:
        client.get("k")
    # Three refusals per round, one sleep per round (the last one ends at the deadline).
    assert len(transport.sent) == 3 * len(clock.sleeps)
    bases = [min(0.8, 0.1 * 2**i) for i in range(len(clock.sleeps))]
    for slept, base in zip(clock.sleeps[:-1], bases, strict=False):
        assert base / 2 <= slept <= base
    assert len(set(clock.sleeps[3:-1])) > 1, "jittered, not a fixed delay"
    assert sum(clock.sleeps) == pytest.approx(30.0)
    assert not isinstance(info.value, DeadlineExceeded)  # every node said no: definite
    assert info.value.maybe_applied is False


def test_the_deadline_bounds_the_call_and_every_attempt_timeout_fits_inside_it() -> None:
    policy = RetryPolicy(timeout=5.0, attempt_timeout=2.0)
    client, transport, clock = make({p: [TIMEOUT] * 10 for p in (8081, 8082, 8083)}, retry=policy)
    started = clock.now
    with pytest.raises(DeadlineExceeded) as info:
        client.put("k", "v")
    assert clock.now - started <= 5.0 + 1e-9
    assert [s.timeout for s in transport.sent] == [2.0, 2.0, 1.0]
    err = info.value
    assert err.maybe_applied and err.idempotency_key == transport.sent[0].headers["Idempotency-Key"]
    assert "send it again with idempotency key" in str(err)


def test_a_call_timeout_overrides_the_clients_deadline() -> None:
    client, _, clock = make({}, timeout=60.0)
    with pytest.raises(Unavailable):
        client.get("k", timeout=0.5)
    assert clock.now - 1000.0 <= 0.5 + 1e-9


def test_refused_connections_alone_leave_a_write_not_applied() -> None:
    client, _, _ = make({}, timeout=1.0)
    with pytest.raises(Unavailable) as info:
        client.put("k", "v")
    assert not isinstance(info.value, DeadlineExceeded)
    assert info.value.maybe_applied is False


# -- final answers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (404, {"error": "not_found", "message": "key 'k' does not exist", "key": "k"}, NotFound),
        (400, {"error": "bad_key", "message": "control character"}, BadRequest),
        (413, {"error": "too_large", "message": "too big"}, BadRequest),
        (422, {"error": "idempotency_key_reused", "message": "reused"}, IdempotencyKeyReused),
        (507, {"error": "quota_exceeded", "message": "full"}, QuotaExceeded),
        (500, {"error": "internal", "message": "bug"}, ServerError),
    ],
)
def test_a_refusal_is_final_and_keeps_the_servers_code_and_message(
    status: int, body: dict[str, str], kind: type[Exception]
) -> None:
    client, transport, _ = make({8081: [answer(status, body)]})
    with pytest.raises(kind) as info:
        client.put("k", "v")
    assert len(transport.sent) == 1
    assert info.value.code == body["error"] and info.value.message == body["message"]  # type: ignore[attr-defined]


def test_compare_failed_tells_the_current_value() -> None:
    conflict = {"error": "cas_mismatch", "message": "m", "current_value": "3", "exists": True}
    client, transport, _ = make({8081: [answer(409, conflict)]})
    with pytest.raises(CompareFailed) as info:
        client.compare_and_swap("counter", "2", "3")
    assert info.value.current_value == "3" and info.value.exists
    assert json.loads(transport.sent[0].body or b"") == {
        "key": "counter",
        "value": "3",
        "prev_value": "2",
    }


def test_create_sends_a_null_prev_value_and_delete_a_prev_value_body() -> None:
    client, transport, _ = make({8081: [ok_write(), ok_write()]})
    client.create("k", "v")
    client.delete("k", prev_value="v")
    assert json.loads(transport.sent[0].body or b"")["prev_value"] is None
    assert transport.sent[1].method == "DELETE" and transport.sent[1].path == "/kv/k"
    assert json.loads(transport.sent[1].body or b"") == {"prev_value": "v"}


def test_range_follows_the_cursor_through_every_page() -> None:
    def listing(keys: list[str], more: bool) -> object:
        items = [{"key": k, "value": k.upper(), "mod_revision": 1} for k in keys]
        return answer(200, {"items": items, "count": len(items), "more": more, "revision": 9})

    client, transport, _ = make(
        {8081: [listing(["a", "b"], True), listing(["c", "d"], True), listing(["e"], False)]}
    )
    got = [(kv.key, kv.value) for kv in client.range("", page_size=2)]
    assert got == [("a", "A"), ("b", "B"), ("c", "C"), ("d", "D"), ("e", "E")]
    paths = [s.path for s in transport.sent]
    assert "start_after" not in paths[0]
    assert "start_after=b" in paths[1] and "start_after=d" in paths[2]


# -- configuration ------------------------------------------------------------------------------


def test_endpoints_come_from_the_environment_when_none_are_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAFTNODE_ENDPOINTS", "n1:8081, https://n2:8443,,n1:8081")
    assert Client().endpoints == ["http://n1:8081", "https://n2:8443"]
    monkeypatch.delenv("RAFTNODE_ENDPOINTS")
    with pytest.raises(ValueError, match="RAFTNODE_ENDPOINTS"):
        Client()


@pytest.mark.parametrize(
    "bad", ["ftp://n1:21", "http://n1:8081/kv", "http://user:pw@n1:8081", "http://n1:99999", ""]
)
def test_a_bad_endpoint_is_refused_with_its_reason(bad: str) -> None:
    with pytest.raises(ValueError, match="endpoint"):
        Client([bad])


def test_bad_options_are_refused_before_any_request() -> None:
    with pytest.raises(ValueError, match="positive"):
        RetryPolicy(timeout=0)
    with pytest.raises(ValueError, match="certificate"):
        Client(NODES, key_file="client.key")
    with pytest.raises(ValueError, match="token"):
        Client(NODES, token="a\nb")
    client, transport, _ = make({})
    with pytest.raises(ValueError, match="consistency"):
        client.get("k", consistency="eventual")
    with pytest.raises(ValueError, match="key"):
        client.put("", "v")
    assert transport.sent == []


# -- asyncio ------------------------------------------------------------------------------------


def test_the_async_client_follows_the_same_rules() -> None:
    clock = FakeClock()
    sync = FakeTransport(clock, {8081: [TIMEOUT], 8082: [REFUSED], 8083: [RESET]})
    sync.scripts[8081].append(ok_write(Idempotent_Replayed="true"))
    client = AsyncClient(
        NODES,
        transport=FakeAsyncTransport(sync),
        clock=clock,
        sleep=clock.async_sleep,
        rng=random.Random(1),
    )

    async def run() -> None:
        result = await client.put("k", "v")
        assert result.replayed
        assert len({s.headers["Idempotency-Key"] for s in sync.sent}) == 1
        assert len(clock.sleeps) == 1  # one full round failed, then one backoff
        with pytest.raises(Unavailable):
            await client.get("k", timeout=1.0)
        await client.close()

    asyncio.run(run())
    assert sync.closed
