"""The chaos workload and checker end to end on loopback: a real cluster under a pause and a
crash must pass; a deliberately broken register server and stale reads declared linearizable
must be caught."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from collections import Counter
from typing import Any

import pytest

from chaos.history import NEMESIS_PROCESS, Operation
from chaos.linearizability import check
from chaos.set_checker import check_set
from chaos.stale_reads import check_stale_reads
from chaos.workload import Recorder, WorkloadConfig, run_workload
from tests.integration.cluster import Cluster, running


def _nemesis(c: Cluster, recorder: Recorder, stop: threading.Event) -> None:
    """Pause the leader past an election timeout, then kill -9 a follower and restart it."""

    def record(kind: str, what: str, target: int, t0: float) -> None:
        recorder.add(
            Operation(
                NEMESIS_PROCESS, kind, t0, recorder.clock(), "ok", value=what, note=f"n{target}"
            )
        )

    stop.wait(2.0)
    leader = c.leader()
    t0 = recorder.clock()
    c.signal(leader, signal.SIGSTOP)
    record("fault", "pause-leader", leader, t0)
    stop.wait(2.0)
    t0 = recorder.clock()
    c.signal(leader, signal.SIGCONT)
    record("heal", "pause-leader", leader, t0)
    stop.wait(1.5)
    follower = next(n for n in (1, 2, 3) if n != c.leader())
    t0 = recorder.clock()
    c.kill(follower)
    record("fault", "kill-follower", follower, t0)
    stop.wait(1.5)
    t0 = recorder.clock()
    c.start(follower)
    record("heal", "kill-follower", follower, t0)


def test_real_cluster_under_pause_and_crash_is_linearizable() -> None:
    """Odd-numbered clients go through raftnode.client (its retries and idempotency keys),
    the others raw HTTP: both kinds of history must check out."""
    with running() as c:
        recorder = Recorder()
        config = WorkloadConfig(
            endpoints=tuple(c.node(n).client_url for n in (1, 2, 3)),
            run_id="it",
            clients=6,
            keys=2,
            duration=10.0,
            timeout=6.0,
            client_library=None,
            seed=1,
        )
        stop = threading.Event()
        nemesis = threading.Thread(target=_nemesis, args=(c, recorder, stop), daemon=True)
        nemesis.start()
        try:
            ops = asyncio.run(run_workload(config, recorder))
        finally:
            stop.set()
            nemesis.join(timeout=30)
        result = check(ops, read_consistencies=frozenset({None, "linearizable", "lease"}))
        assert result.valid is True, [(k.key, k.witness) for k in result.anomalies]
        assert sum(k.operations for k in result.keys) > 100
        sets = check_set(ops)
        assert sets.valid, sets
        assert sets.acknowledged > 10
        assert check_stale_reads(ops) == []
        assert {op.value for op in ops if op.kind == "fault"} == {"pause-leader", "kill-follower"}
        through = Counter(
            ("library" if op.note.startswith("client") else "raw", op.kind, op.outcome)
            for op in ops
            if op.process not in {NEMESIS_PROCESS, "final"}
        )
        for path in ("library", "raw"):
            for kind in ("get", "put", "cas", "add"):
                assert through[(path, kind, "ok")] > 0, (path, kind, through)
        library_processes = {op.process for op in ops if op.note.startswith("client")}
        assert library_processes == {"1", "3", "5"}


class BrokenRegister:
    """An HTTP server speaking the client API over one in-memory dict, that answers every
    third read with the value before the last write: the stale-read bug a lease read served
    after its lease would have."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.previous: dict[str, str | None] = {}
        self.reads = 0

    def answer(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        if method == "GET" and path.startswith("/kv?"):
            prefix = path.split("prefix=", 1)[1].split("&", 1)[0].replace("%2F", "/")
            items = [
                {"key": k, "value": v}
                for k, v in sorted(self.values.items())
                if k.startswith(prefix)
            ]
            return 200, {"items": items, "count": len(items), "more": False, "revision": 1}
        key = path.split("?", 1)[0].removeprefix("/kv/") if method != "POST" else body["key"]
        current = self.values.get(key)
        if method == "GET":
            self.reads += 1
            value = self.previous.get(key, current) if self.reads % 3 == 0 else current
            return (200, {"value": value}) if value is not None else (404, {"error": "not_found"})
        if method == "POST" and "prev_value" in body and body["prev_value"] != current:
            return 409, {"error": "cas_mismatch", "current_value": current}
        self.previous[key] = current
        if method == "DELETE":
            self.values.pop(key, None)
        else:
            self.values[key] = body["value"]
        return 200, {"ok": True}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        method, path, _ = head.split(" ", 2)
        length = int(
            next(
                (
                    line.split(":")[1]
                    for line in head.split("\r\n")
                    if line.lower().startswith("content-length")
                ),
                "0",
            )
        )
        raw = await reader.readexactly(length) if length else b""
        status, answer = self.answer(method, path, json.loads(raw) if raw else None)
        payload = json.dumps(answer).encode()
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload
        )
        await writer.drain()
        writer.close()


@pytest.mark.parametrize("client_library", [False, True], ids=["raw-http", "client-library"])
def test_broken_register_server_is_caught(client_library: bool) -> None:
    """Raw HTTP, and the client library too: it retries only what has no answer, so it hands
    a stale answer back as it came and the checker must catch it from library clients."""

    async def scenario() -> list[Operation]:
        broken = BrokenRegister()
        server = await asyncio.start_server(broken.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            config = WorkloadConfig(
                endpoints=(f"http://127.0.0.1:{port}",),
                run_id="broken",
                clients=5,
                keys=2,
                duration=3.0,
                timeout=2.0,
                client_library=client_library,
                seed=3,
            )
            return await run_workload(config, Recorder())
        finally:
            server.close()
            await server.wait_closed()

    ops = asyncio.run(scenario())
    assert all(op.note.startswith("client") == client_library for op in ops if op.kind == "get")
    result = check(ops)
    assert result.valid is False
    witness = result.anomalies[0].witness
    assert 2 <= len(witness) <= 6
    assert check(list(witness)).valid is False
    assert check_set(ops).valid  # adds are not broken: only reads are


def test_stale_reads_of_a_node_cut_off_from_the_majority_are_not_linearizable() -> None:
    """n3 misses a write (killed), then comes back alone (the others killed): its stale read
    returns the old value. Declared linearizable, that read is an anomaly; as stale it is not."""
    with running() as c:
        recorder = Recorder()

        def write(node: int, value: str) -> None:
            t0 = recorder.clock()
            r = c.put_retrying([node], "k", value)
            assert r.status == 200
            recorder.add(Operation("1", "put", t0, recorder.clock(), "ok", key="k", value=value))

        leader = c.leader()
        write(leader, "v1")
        c.wait_for("n3 applied v1", lambda: c.get(3, "k", "stale").status == 200)
        victim = 3 if leader != 3 else 2
        c.kill(victim)
        write(c.leader(among=[n for n in (1, 2, 3) if n != victim]), "v2")
        for node in [n for n in (1, 2, 3) if n != victim]:
            c.kill(node)
        c.start(victim)
        t0 = recorder.clock()
        answer = c.wait_for(
            "a stale answer",
            lambda: (r := c.get(victim, "k", "stale")).status == 200 and r,
            timeout=20.0,
        )
        stale_value = answer.json()["value"]
        assert stale_value == "v1"
        for consistency in ("stale", "linearizable"):
            recorder.add(
                Operation(
                    "2",
                    "get",
                    t0,
                    recorder.clock(),
                    "ok",
                    key="k",
                    result=stale_value,
                    consistency=consistency,
                )
            )
        declared = check(recorder.operations, read_consistencies=frozenset({"linearizable"}))
        assert declared.valid is False
        honest = [op for op in recorder.operations if op.consistency != "linearizable"]
        assert check(honest).valid is True
        assert check_stale_reads(honest) == []
