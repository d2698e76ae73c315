"""``Client.watch``, compare-and-set on revisions and ``Client.txn`` on real processes, with the
leader SIGKILLed in the middle of calls; and ``raftnode kv watch|txn``.

Revisions are the witnesses: every applied mutation gets the next store revision, so a watch
that saw each acknowledged write once at the revision its write was acknowledged with missed
nothing and repeated nothing; a racing compare-and-set round with exactly one winner, whose
revision every loser was shown, applied nothing twice; and a store revision that moved by the
number of successful transactions applied each of them once.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from raftnode.cli import main
from raftnode.client import (
    AsyncClient,
    Client,
    Compare,
    CompareFailed,
    TxnOp,
    WatchEvent,
    WriteResult,
)
from tests.integration.cluster import Cluster
from tests.integration.test_client import POLICY, CountingTransport, endpoints
from tests.integration.test_watch import cluster_with

WRITES = 150


def test_sync_and_async_watches_see_every_write_once_in_order_across_a_leader_kill() -> None:
    with cluster_with(watch={"progress_ms": 200}) as c:
        old = c.leader()
        urls = endpoints(c, old)  # the watches start on the leader: its death cuts them
        acked: dict[str, int] = {}
        seen_sync: list[WatchEvent] = []
        seen_async: list[WatchEvent] = []
        async_open = threading.Event()
        reconnects: dict[str, int] = {}

        def read_async() -> None:
            async def run() -> None:
                kv = AsyncClient(urls, retry=POLICY)
                async with kv, kv.watch(prefix="n/", idle_timeout=5.0) as watch:
                    async_open.set()
                    async for event in watch:
                        seen_async.append(event)
                        if len(seen_async) >= WRITES:
                            break
                    reconnects["async"] = watch.reconnects

            asyncio.run(run())

        with Client(urls, retry=POLICY) as kv:
            watch = kv.watch(prefix="n/", idle_timeout=5.0)

            def read_sync() -> None:
                for event in watch:
                    seen_sync.append(event)
                    if len(seen_sync) >= WRITES:
                        return

            readers = [
                threading.Thread(target=read_sync, daemon=True),
                threading.Thread(target=read_async, daemon=True),
            ]
            for t in readers:
                t.start()
            assert async_open.wait(15)

            def write() -> None:
                for i in range(WRITES):
                    acked[f"n/{i:04d}"] = kv.put(f"n/{i:04d}", str(i)).revision

            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            try:
                c.wait_for("writes watched", lambda: len(seen_sync) >= 40, timeout=20)
                c.kill(old)
                writer.join(60)
                assert not writer.is_alive() and len(acked) == WRITES
                for t in readers:
                    t.join(30)
                    assert not t.is_alive(), "a watch stopped delivering"
            finally:
                watch.close()
            reconnects["sync"] = watch.reconnects
        for seen in (seen_sync, seen_async):
            keys = [e.key for e in seen]
            assert len(keys) == len(set(keys)) == WRITES, "a change was missed or repeated"
            assert [(e.key, e.revision) for e in seen] == sorted(acked.items(), key=lambda x: x[1])
            assert all(e.type == "put" and e.value == str(int((e.key or "")[2:])) for e in seen)
            assert all(e.mod_revision == e.revision for e in seen)
        assert min(reconnects.values()) >= 1, reconnects  # the kill cut both streams


def cas_attempt(
    kv: Client,
    barrier: threading.Barrier,
    outcomes: list[WriteResult | CompareFailed | None],
    n: int,
    r: int,
    revision: int,
) -> None:
    """Writer ``n`` of round ``r``: replace the value it read at ``revision``, once."""
    barrier.wait(10)
    try:
        outcomes[n] = kv.put("race", f"r{r}-w{n}", prev_revision=revision)
    except CompareFailed as e:
        outcomes[n] = e


def test_racing_compare_and_set_on_revision_has_one_winner_per_round_across_leader_kills(
    cluster: Cluster,
) -> None:
    c = cluster
    old = c.leader()
    writers, rounds, kill_rounds = 6, 30, (5, 15, 25)
    winners: list[WriteResult] = []
    transport = CountingTransport()
    with Client(endpoints(c, old), retry=POLICY, transport=transport) as kv:
        created = kv.put("race", "start", prev_revision=0)  # 0: only if absent
        with pytest.raises(CompareFailed):
            kv.put("race", "again", prev_revision=0)
        for r in range(rounds):
            revision = kv.get("race").mod_revision
            assert revision is not None
            killing = r in kill_rounds
            barrier = threading.Barrier(writers + killing)
            outcomes: list[WriteResult | CompareFailed | None] = [None] * writers
            threads = [
                threading.Thread(target=cas_attempt, args=(kv, barrier, outcomes, n, r, revision))
                for n in range(writers)
            ]
            for t in threads:
                t.start()
            if killing:
                leader = c.leader()
                barrier.wait(10)
                c.kill(leader)  # the round's writes are in flight at the leader
            for t in threads:
                t.join(40)
            if killing:
                c.start(leader)  # back as a follower, so that the next kill keeps a quorum
            wins = [o for o in outcomes if isinstance(o, WriteResult)]
            losses = [o for o in outcomes if isinstance(o, CompareFailed)]
            assert len(wins) == 1 and len(losses) == writers - 1, (r, outcomes)
            assert all(e.mod_revision in (None, wins[0].revision) for e in losses)
            winners.append(wins[0])
        final = kv.get("race")
    assert transport.failures > 0, "the kills hit no call in flight"
    revisions = [w.revision for w in winners]
    assert revisions == sorted(set(revisions)), "a winning write was applied twice"
    assert final.version == rounds + 1 and final.create_revision == created.revision
    assert final.mod_revision == revisions[-1]
    assert final.value == f"r{rounds - 1}-w" + final.value.rsplit("-w", 1)[1]


def test_transactions_through_the_client_apply_once_across_leader_kills(
    cluster: Cluster,
) -> None:
    c = cluster
    old = c.leader()
    done: list[tuple[str, int]] = []
    lock = threading.Lock()
    stop = threading.Event()
    transport = CountingTransport()
    with Client(endpoints(c, old), retry=POLICY, transport=transport) as kv:
        base = kv.put("tx/counter", "0").revision

        def increment(n: int) -> None:
            i = 0
            while not stop.is_set():
                current = kv.get("tx/counter")
                assert current.mod_revision is not None
                marker = f"tx/done/{n}-{i}"
                result = kv.txn(
                    [Compare.mod_revision("tx/counter", "==", current.mod_revision)],
                    [TxnOp.put("tx/counter", str(int(current.value) + 1)), TxnOp.put(marker, "1")],
                    [TxnOp.get("tx/counter")],
                )
                if result.succeeded:
                    with lock:
                        done.append((marker, result.revision))
                    i += 1
                else:
                    assert result.responses[0].op == "get"

        threads = [threading.Thread(target=increment, args=(n,), daemon=True) for n in range(6)]
        for t in threads:
            t.start()
        try:

            def more(n: int) -> Callable[[], bool]:
                target = len(done) + n
                return lambda: len(done) >= target

            for kill in range(3):
                c.wait_for("transactions before a kill", more(30), timeout=30)
                leader = old if kill == 0 else c.leader()
                c.kill(leader)
                c.wait_for("transactions after a kill", more(20), timeout=30)
                c.start(leader)  # back as a follower, so that the next kill keeps a quorum
        finally:
            stop.set()
            for t in threads:
                t.join(40)
        assert transport.failures > 0, "the kill hit no call in flight"
        assert int(kv.get("tx/counter").value) == len(done)
        assert sorted(x.key for x in kv.range("tx/done/")) == sorted(m for m, _ in done)
        revisions = [r for _, r in done]
        assert len(set(revisions)) == len(done), "two acknowledgements of one transaction"
        assert kv.count("tx/").revision - base == len(done), "a transaction applied twice"


def test_revision_calls_and_txn_replay_on_a_live_cluster(shared_cluster: Cluster) -> None:
    with Client(endpoints(shared_cluster), retry=POLICY) as kv:
        a = kv.put("rv/a", "1")
        with pytest.raises(CompareFailed) as e:
            kv.put("rv/a", "2", prev_revision=a.revision - 1)
        assert e.value.mod_revision == a.revision
        b = kv.put("rv/a", "2", prev_revision=a.revision)
        item = kv.get("rv/a")
        assert (item.mod_revision, item.create_revision, item.version) == (
            b.revision,
            a.revision,
            2,
        )
        with pytest.raises(CompareFailed):
            kv.delete("rv/a", prev_revision=a.revision)
        for i in range(7):
            kv.put(f"rv/list/{i}", str(i))
        assert kv.count("rv/list/").count == 7
        assert kv.count("rv/list/", start="rv/list/2", end="rv/list/5").count == 3
        keys = [x.key for x in kv.range("rv/list/", start="rv/list/2", page_size=2)]
        assert keys == [f"rv/list/{i}" for i in range(2, 7)]
        txn = (
            [Compare.exists("rv/lock", False)],
            [TxnOp.put("rv/lock", "me"), TxnOp.get("rv/a")],
            [TxnOp.get("rv/lock")],
        )
        first = kv.txn(*txn, idempotency_key="rv-txn-once")
        again = kv.txn(*txn, idempotency_key="rv-txn-once")  # the server keeps the outcome
        assert first.succeeded and again.succeeded and again.replayed
        assert again.revision == first.revision and not first.replayed
        assert first.responses[1].value == "2" and first.responses[0].created
        other = kv.txn(*txn)
        assert not other.succeeded and other.responses[0].value == "me"
        assert kv.count("rv/lock").count == 1


# -- the command line -----------------------------------------------------------------------------


def run_kv(capsys: pytest.CaptureFixture[str], c: Cluster, *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(["kv", *argv, "--endpoints", ",".join(endpoints(c))])
    except SystemExit as e:
        rc = int(e.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def test_kv_watch_prints_each_change_while_writes_run(
    shared_cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    c = shared_cluster
    with Client(endpoints(c), retry=POLICY) as kv:
        first = kv.put("cw/old/0", "a")
        kv.put("cw/old/1", "b")
        kv.delete("cw/old/0")
        stop = threading.Event()

        def write() -> None:
            i = 0
            while not stop.is_set():
                kv.put(f"cw/new/{i:04d}", str(i))
                i += 1
                time.sleep(0.02)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        try:
            rc, out, err = run_kv(
                capsys, c, "watch", "cw/new/", "--prefix", "--count", "5", "--timeout", "20"
            )
        finally:
            stop.set()
            writer.join(10)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["REVISION", "TYPE", "KEY", "VALUE"] and len(lines) == 6
    rows = [line.split() for line in lines[1:]]
    assert all(row[1] == "PUT" and row[2].startswith("cw/new/") for row in rows)
    revisions = [int(row[0]) for row in rows]
    assert revisions == sorted(set(revisions))
    # From a past revision, as JSON lines: the history, deletes included.
    rc, out, _ = run_kv(
        capsys,
        c,
        "watch",
        "cw/old/",
        "--prefix",
        "--rev",
        str(first.revision),
        "--count",
        "3",
        "--json",
    )
    events = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and [(e["type"], e["key"]) for e in events] == [
        ("put", "cw/old/0"),
        ("put", "cw/old/1"),
        ("delete", "cw/old/0"),
    ]
    assert events[0]["revision"] == first.revision and events[2]["value"] is None
    # Nothing comes: --timeout ends it, and --count says it fell short.
    rc, out, err = run_kv(capsys, c, "watch", "cw/quiet", "--count", "1", "--timeout", "0.5")
    assert rc == 1 and "0 of 1 events" in err


def test_kv_txn_reads_a_file_and_prints_the_result(
    shared_cluster: Cluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    c = shared_cluster
    txn = {
        "compare": [{"key": "ct/flag", "target": "version", "op": "equal", "value": 0}],
        "success": [{"op": "put", "key": "ct/flag", "value": "on"}, {"op": "get", "key": "ct/x"}],
        "failure": [{"op": "get", "key": "ct/flag"}],
    }
    path = tmp_path / "txn.json"
    path.write_text(json.dumps(txn))
    rc, out, err = run_kv(capsys, c, "txn", str(path))
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("SUCCEEDED (success branch ran) at revision ")
    assert "ct/flag: created" in lines[1] and "ct/x: not found" in lines[2]
    rc, out, _ = run_kv(capsys, c, "txn", str(path), "--json")
    result = json.loads(out)
    assert rc == 1 and result["succeeded"] is False
    assert result["responses"][0]["value"] == "on"
    path.write_text('{"success": [{"op": "put", "key": "ct/y"}]}')
    rc, _, err = run_kv(capsys, c, "txn", str(path))
    assert rc == 2 and "success[0]: put 'ct/y': the value must be a string" in err
    rc, _, err = run_kv(capsys, c, "txn", str(tmp_path / "missing.json"))
    assert rc == 2 and "cannot read the transaction" in err


def load_example(name: str) -> Any:
    path = Path(__file__).resolve().parents[2] / "examples" / "client" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_guides_config_push_example_converges_across_a_leader_kill() -> None:
    example = load_example("config_push_watch")
    with cluster_with(watch={"progress_ms": 200}) as c:
        old = c.leader()
        with Client(endpoints(c, old), retry=POLICY) as kv:
            kv.put("cfg/setting-early", "listed, not watched")
            workers = [example.ConfigWorker(kv, "cfg/") for _ in range(3)]
            threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
            for t in threads:
                t.start()
            example.publish(kv, "cfg/a/", 10)
            c.kill(old)
            expected = example.publish(kv, "cfg/b/", 15)
            expected = {x.key: x.value for x in kv.range("cfg/")}
            try:
                for w in workers:
                    assert w.wait_until(expected, 30), (w.error, w.config)
            finally:
                for w in workers:
                    w.stop()
                for t in threads:
                    t.join(10)
        assert len(expected) == 1 + (8 - 2) + (12 - 3)  # puts less deletes
        assert all(w.error is None and w.relists == 0 for w in workers)
        assert all(not t.is_alive() for t in threads)
