"""The list-append workload and Elle-style checker on a real three-node cluster: transactions
through the client library and through raw HTTP with Idempotency-Key, while the leader is
SIGKILLed and restarted, are strictly serializable; a client that drops its compares (a blind
put from a stale read) is caught."""

from __future__ import annotations

import asyncio
import threading

import pytest

from chaos.elle import check_list_append
from chaos.history import NEMESIS_PROCESS, Operation, numbered
from chaos.list_append import AppendConfig, run_list_append
from chaos.workload import Recorder
from tests.integration.cluster import Cluster, running


def _kill_leader(c: Cluster, recorder: Recorder, stop: threading.Event) -> None:
    stop.wait(3.0)
    leader = c.leader()
    t0 = recorder.clock()
    c.kill(leader)
    recorder.add(
        Operation(NEMESIS_PROCESS, "fault", t0, recorder.clock(), "ok", value="kill-leader")
    )
    stop.wait(3.0)
    t0 = recorder.clock()
    c.start(leader)
    recorder.add(
        Operation(NEMESIS_PROCESS, "heal", t0, recorder.clock(), "ok", value="kill-leader")
    )


def _run(c: Cluster, config: AppendConfig, nemesis: bool) -> list[Operation]:
    recorder = Recorder()
    stop = threading.Event()
    thread = threading.Thread(target=_kill_leader, args=(c, recorder, stop), daemon=True)
    if nemesis:
        thread.start()
    try:
        return numbered(asyncio.run(run_list_append(config, recorder)))
    finally:
        stop.set()
        if nemesis:
            thread.join(timeout=30)


@pytest.mark.parametrize(
    ("client_library", "keyed"),
    [(True, 1.0), (False, 1.0), (False, 0.0)],
    ids=["client-library", "raw-http-idempotency-key", "raw-http-no-key"],
)
def test_transactions_under_a_leader_crash_are_strictly_serializable(
    client_library: bool, keyed: float
) -> None:
    with running() as c:
        config = AppendConfig(
            endpoints=tuple(c.node(n).client_url for n in (1, 2, 3)),
            run_id="it",
            clients=5,
            keys=3,
            duration=12.0,
            key_seconds=8.0,
            client_library=client_library,
            idempotent_share=keyed,
            seed=3,
        )
        ops = _run(c, config, nemesis=True)
        result = check_list_append(ops)
        assert result.valid, result.anomalies[:5]
        assert result.committed >= sum(1 for op in ops if op.kind == "txn" and op.outcome == "ok")
        txns = [op for op in ops if op.kind == "txn"]
        appended = [op for op in txns if op.outcome == "ok" and "append" in str(op.result)]
        assert len(appended) > 50, len(appended)
        assert {op.value for op in ops if op.kind == "fault"} == {"kill-leader"}


def test_a_client_without_compares_is_caught() -> None:
    with running() as c:
        config = AppendConfig(
            endpoints=tuple(c.node(n).client_url for n in (1, 2, 3)),
            run_id="broken",
            clients=5,
            keys=2,
            max_ops=2,
            duration=6.0,
            think=0.0,
            broken=True,
            seed=4,
        )
        result = check_list_append(_run(c, config, nemesis=False))
        assert not result.valid
        found = result.by_kind()
        assert found.keys() & {"lost-append", "incompatible-order", "G-single", "G2"}, found
