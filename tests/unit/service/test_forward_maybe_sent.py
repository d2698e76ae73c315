"""A keyed write that a follower forwarded to a leader which then fell silent may still apply
(the leader may have logged and replicated it). Found by the long ``make chaos`` run with full
disks: the write was sent again, refused by whoever took the second attempt, and answered
"nothing was done" (503) although the first attempt applied. From the moment an attempt may
have reached a leader, a refusal of a later attempt never ends in 503: an election still under
way (503) is waited out and the write sent again until the deadline (its key keeps it from
applying twice), and what is left at the deadline, or a full disk, is 504 (outcome unknown)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest

from raftnode.config import Address, Limits
from raftnode.http.client_api import ClientApi, ClientApiSettings
from raftnode.http.connection import Request, Response
from raftnode.http.forward import ForwardedResponse, ForwardUnknown
from raftnode.kv.commands import CommandResult
from raftnode.kv.service import DiskFull
from raftnode.metrics import NodeMetrics
from raftnode.node import NotLeader, Unavailable

LEADER = 2


class FollowerOfNodeTwo:
    """A follower that hears from its leader (node 2) until told otherwise."""

    def __init__(self) -> None:
        self.membership = "voter"
        self.stopping = False
        self.is_leader = False
        self.leader_id = LEADER

    def peer_connected(self, node_id: int) -> bool:
        return True

    def leader_recently_heard(self) -> bool:
        return True

    def leader_presumed_gone(self) -> bool:
        return False

    async def changed(self, deadline: float) -> bool:
        await asyncio.sleep(0.01)  # a tick
        return asyncio.get_running_loop().time() < deadline


class Service:
    """Forwards while it follows; once it leads, refuses the write with ``local_refusal``
    ``refusals`` times (every time: None), then applies it."""

    def __init__(self, local_refusal: Exception, refusals: int | None = None) -> None:
        self.node = FollowerOfNodeTwo()
        self.store = SimpleNamespace()
        self.local_refusal = local_refusal
        self.refusals = refusals

    async def write(self, cmd: Any, deadline: float) -> Any:
        if not self.node.is_leader:
            raise NotLeader(self.node.leader_id)
        if self.refusals is None or self.refusals > 0:
            if self.refusals is not None:
                self.refusals -= 1
            raise self.local_refusal
        return CommandResult(ok=True, revision=7)


class Leaders:
    """The forwarding pool: its first attempt gets no answer (the leader went quiet with the
    request in flight); later attempts get ``then`` (a list: one answer per attempt, the last
    one from then on) or, with ``then`` None, this node leads."""

    def __init__(
        self, node: FollowerOfNodeTwo, then: ForwardedResponse | list[ForwardedResponse] | None
    ) -> None:
        self.node = node
        self.then = [then] if isinstance(then, ForwardedResponse) else then
        self.calls = 0

    async def forward(self, *args: Any) -> ForwardedResponse:
        self.calls += 1
        if self.calls == 1:
            if self.then is None:
                self.node.is_leader = True
                self.node.leader_id = 1
            raise ForwardUnknown("node 2 went quiet with the request in flight")
        assert self.then is not None
        return self.then[min(self.calls - 2, len(self.then) - 1)]

    def close(self) -> None:
        pass


def refused(status: int, code: str) -> ForwardedResponse:
    body = json.dumps({"error": code, "message": "nothing was written"}).encode()
    return ForwardedResponse(status, body, {"Content-Type": "application/json"})


def client_api(
    service: Service, leaders: Any, request_timeout: float, others: dict[int, int]
) -> ClientApi:
    """Node 1's client API over ``service``, forwarding through ``leaders`` to the other
    members (node id -> port on 127.0.0.1)."""
    members = {node: Address("127.0.0.1", port) for node, port in {1: 8, **others}.items()}
    settings = ClientApiSettings(
        node_id=1, limits=Limits(), request_timeout=request_timeout, member_clients=members
    )
    api = ClientApi(service, settings, NodeMetrics())  # type: ignore[arg-type]
    api._leaders = leaders
    return api


def put_request(key: str) -> Request:
    """``PUT /kv/a``, with ``key`` as its Idempotency-Key (none when empty)."""
    return Request(
        method="PUT",
        path="/kv/a",
        raw_path="/kv/a",
        query={},
        headers={"idempotency-key": key} if key else {},
        body=b'{"value": "v"}',
        remote="127.0.0.1",
        started=0.0,
    )


def keyed_put(
    service: Service,
    then: ForwardedResponse | list[ForwardedResponse] | None,
    key: str = "k1",
) -> Response:
    api = client_api(service, Leaders(service.node, then), 0.5, {LEADER: 9})
    return asyncio.run(api.handle(put_request(key)))


@pytest.mark.parametrize(
    ("status", "code"), [(503, "unavailable"), (507, "disk_full"), (503, "upgrade_in_progress")]
)
def test_a_refusal_from_the_next_leader_after_a_silent_one_is_504(status: int, code: str) -> None:
    r = keyed_put(Service(Unavailable("unused")), refused(status, code))
    body = json.loads(r.body)
    assert (r.status, body["error"]) == (504, "outcome_unknown"), body
    assert "same Idempotency-Key" in body["message"]


@pytest.mark.parametrize(
    "refusal",
    [
        Unavailable("no leader could take the write in time"),
        DiskFull(free=1 << 20, minimum=256 << 20),
    ],
)
def test_a_refusal_here_after_this_node_took_over_is_504(refusal: Exception) -> None:
    r = keyed_put(Service(refusal), None)
    body = json.loads(r.body)
    assert (r.status, body["error"]) == (504, "outcome_unknown"), body


def test_a_refusal_before_any_attempt_reached_a_leader_stays_what_it_was() -> None:
    service = Service(DiskFull(free=1 << 20, minimum=256 << 20))
    service.node.is_leader = True  # nothing forwarded: the refusal is certain
    r = keyed_put(service, None)
    assert (r.status, json.loads(r.body)["error"]) == (507, "disk_full")


def test_an_answer_of_the_next_leader_that_is_an_outcome_passes_through() -> None:
    conflict = ForwardedResponse(409, b'{"error": "cas_mismatch"}', {})
    r = keyed_put(Service(Unavailable("unused")), conflict)
    assert r.status == 409


def test_a_next_leader_not_ready_yet_is_sent_the_write_again_until_it_takes_it() -> None:
    """Found by ``make test`` on a fresh clone: the follower that gave up on a silent leader
    forwarded to the newly elected one, which refused (503) while not yet ready, and the
    keyed write ended 504 although a moment later it would have applied."""
    ok = ForwardedResponse(200, b'{"revision": 7}', {"Content-Type": "application/json"})
    r = keyed_put(Service(Unavailable("unused")), [refused(503, "unavailable"), ok])
    assert r.status == 200


def test_an_election_still_under_way_here_is_waited_out_after_taking_over() -> None:
    r = keyed_put(Service(Unavailable("no leader is known (election in progress)"), 2), None)
    assert r.status == 200, r.body


class SlowOldLeader:
    """The forwarding pool when node 2 stops answering with the request in flight, and this
    node hears a new leader (node 3) after voting for it, without campaigning itself: the
    first attempt answers only after ``old_answers_after`` seconds; node 3 answers at once."""

    def __init__(self, node: FollowerOfNodeTwo, old_answers_after: float) -> None:
        self.node = node
        self.old_answers_after = old_answers_after
        self.ports: list[int] = []

    async def forward(self, host: str, port: int, *args: Any) -> ForwardedResponse:
        self.ports.append(port)
        if port == 9:  # node 2
            asyncio.get_running_loop().call_later(0.03, setattr, self.node, "leader_id", 3)
            await asyncio.sleep(self.old_answers_after)
        return ForwardedResponse(200, b'{"revision": 7}', {"Content-Type": "application/json"})

    def close(self) -> None:
        pass


def put_via_new_leader(key: str, old_answers_after: float) -> tuple[Response, list[int], float]:
    service = Service(Unavailable("unused"))
    leaders = SlowOldLeader(service.node, old_answers_after)
    api = client_api(service, leaders, 2.0, {LEADER: 9, 3: 10})
    request = put_request(key)

    async def timed() -> tuple[Response, float]:
        started = asyncio.get_running_loop().time()
        answer = await api.handle(request)
        return answer, asyncio.get_running_loop().time() - started

    answer, took = asyncio.run(timed())
    return answer, leaders.ports, took


def test_a_keyed_write_goes_on_to_the_next_leader_once_this_node_follows_it() -> None:
    """Found by ``make test`` in CI: the leader the write went to was stopped; this node voted
    for node 3 and followed it within milliseconds, so it never saw an election timeout of
    silence nor campaigned, and the write waited out its whole timeout (504)."""
    r, ports, took = put_via_new_leader("k1", old_answers_after=10.0)
    assert r.status == 200, r.body
    assert ports == [9, 10]
    assert took < 1.0


def test_an_unkeyed_write_still_waits_for_the_leader_it_went_to() -> None:
    """Sent again it could apply twice: the leader that handed over (or only paused) answers."""
    r, ports, _ = put_via_new_leader("", old_answers_after=0.2)
    assert r.status == 200, r.body
    assert ports == [9]
