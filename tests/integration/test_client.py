"""``raftnode.client`` and ``raftnode kv`` against a live 3-node cluster, including while the
leader is SIGKILLed or paused (SIGSTOP, then SIGCONT) in the middle of calls.

Exactly-once is checked three ways: a counter compare-and-set incremented by many concurrent
writers ends at exactly the number of increments the client acknowledged (a lost answer that
was retried without the idempotency key would be counted twice or not at all); every
acknowledged blind write is present; and the store's revision, which every applied mutation
bumps once, moved by exactly the number of writes acknowledged (a write applied twice would
move it further).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from raftnode.cli import main
from raftnode.client import (
    AsyncClient,
    Client,
    CompareFailed,
    IdempotencyKeyReused,
    NotFound,
    RetryPolicy,
    WriteResult,
)
from raftnode.client.async_transport import AsyncHttpTransport
from raftnode.client.retry import HttpAnswer, TransportError
from raftnode.client.transport import HttpTransport
from raftnode.devcluster import free_ports
from tests.integration.cluster import Cluster, running

# A paused or dead node is left after 1 s; the whole call may take up to 20 s.
POLICY = RetryPolicy(timeout=20.0, attempt_timeout=1.0)


def endpoints(c: Cluster, first: int | None = None) -> list[str]:
    """Every node's URL, ``first`` (the leader, so that faults hit the client itself rather
    than a follower forwarding for it) at the head."""
    nodes = sorted(c.nodes, key=lambda n: n.ports.node_id != first)
    return [n.client_url for n in nodes]


class CountingTransport(HttpTransport):
    """The real transport, counting the attempts that got no answer."""

    failures = 0

    def request(self, *args: Any, **kwargs: Any) -> HttpAnswer:
        try:
            return super().request(*args, **kwargs)
        except TransportError:
            self.failures += 1
            raise


class CountingAsyncTransport(AsyncHttpTransport):
    failures = 0

    async def request(self, *args: Any, **kwargs: Any) -> HttpAnswer:
        try:
            return await super().request(*args, **kwargs)
        except TransportError:
            self.failures += 1
            raise


@pytest.fixture
def fresh() -> Iterator[Cluster]:
    with running() as c:
        yield c


# -- the operations ------------------------------------------------------------------------------


def test_client_operations_on_a_live_cluster(shared_cluster: Cluster) -> None:
    with Client(endpoints(shared_cluster), retry=POLICY) as kv:
        first = kv.put("cli/a", "1")
        assert first.created and kv.get("cli/a").value == "1"
        assert kv.get("cli/a", consistency="stale").mod_revision == first.revision
        with pytest.raises(CompareFailed) as cas:
            kv.compare_and_swap("cli/a", "0", "2")
        assert cas.value.current_value == "1"
        assert kv.compare_and_swap("cli/a", "1", "2").prev_value == "1"
        with pytest.raises(CompareFailed):
            kv.create("cli/a", "again")
        # The same idempotency key again: the first outcome, not a second write.
        once = kv.put("cli/once", "x", idempotency_key="client-test-once")
        again = kv.put("cli/once", "x", idempotency_key="client-test-once")
        assert again.replayed and again.revision == once.revision
        with pytest.raises(IdempotencyKeyReused):
            kv.put("cli/once", "y", idempotency_key="client-test-once")
        for i in range(10):
            kv.put(f"cli/list/{i:02}", str(i))
        listed = [(x.key, x.value) for x in kv.range("cli/list/", page_size=3)]
        assert listed == [(f"cli/list/{i:02}", str(i)) for i in range(10)]
        assert [x.key for x in kv.range("cli/list/", start_after="cli/list/07")] == [
            "cli/list/08",
            "cli/list/09",
        ]
        assert kv.delete("cli/a", prev_value="2").prev_value == "2"
        with pytest.raises(NotFound):
            kv.get("cli/a")
        with pytest.raises(NotFound):
            kv.delete("cli/a")
        assert kv.members()["leader"] in (1, 2, 3)


# -- exactly once across a dead or paused leader ------------------------------------------------


@dataclass
class Ledger:
    """What the client acknowledged: increments, blind writes, every write's revision."""

    increments: int = 0
    blind: dict[str, str] = field(default_factory=dict)
    revisions: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acked(
        self, result: WriteResult, *, increment: bool = False, blind: tuple[str, str] | None = None
    ) -> None:
        with self.lock:
            self.revisions.append(result.revision)
            self.increments += increment
            if blind is not None:
                self.blind[blind[0]] = blind[1]

    @property
    def writes(self) -> int:
        return len(self.revisions)


def check_exactly_once(c: Cluster, ledger: Ledger, base_revision: int) -> None:
    with Client(endpoints(c), retry=POLICY) as kv:
        assert int(kv.get("counter").value) == ledger.increments
        present = {x.key: x.value for x in kv.range("blind/")}
        assert present == ledger.blind, "an acknowledged write is missing or one appeared unasked"
        revision = kv.page("blind/", limit=1).revision
    assert len(set(ledger.revisions)) == ledger.writes, "two acknowledgements of one write"
    assert revision - base_revision == ledger.writes, (
        f"{revision - base_revision} mutations applied for {ledger.writes} acknowledged writes"
    )


async def async_writer(kv: AsyncClient, ledger: Ledger, n: int, stop: asyncio.Event) -> None:
    i = 0
    while not stop.is_set():
        if n % 2:  # half the writers increment the counter, half write new keys
            current = (await kv.get("counter")).value
            try:
                result = await kv.compare_and_swap("counter", current, str(int(current) + 1))
            except CompareFailed:
                continue  # another writer got there first: read again
            ledger.acked(result, increment=True)
        else:
            key, value = f"blind/{n}-{i}", f"v{i}"
            ledger.acked(await kv.put(key, value), blind=(key, value))
            i += 1


def test_async_writes_apply_exactly_once_across_a_leader_sigkill(fresh: Cluster) -> None:
    c = fresh

    async def run() -> Ledger:
        ledger = Ledger()
        transport = CountingAsyncTransport()
        old = await asyncio.to_thread(c.leader)
        async with AsyncClient(endpoints(c, old), transport=transport, retry=POLICY) as kv:
            ledger.acked(await kv.create("counter", "0"))
            base = ledger.revisions[0] - 1
            stop = asyncio.Event()
            writers = [asyncio.create_task(async_writer(kv, ledger, n, stop)) for n in range(8)]
            try:
                await wait_for(lambda: ledger.writes >= 40, 10)
                c.kill(old)
                at_kill = ledger.writes
                await wait_for(lambda: ledger.writes >= at_kill + 60, 15)
            finally:
                stop.set()
                await asyncio.gather(*writers)
        assert transport.failures > 0, "the kill never hit a call in flight"
        check_exactly_once(c, ledger, base)
        return ledger

    ledger = asyncio.run(run())
    assert ledger.increments > 0 and ledger.blind


def sync_writer(kv: Client, ledger: Ledger, n: int, stop: threading.Event) -> None:
    i = 0
    while not stop.is_set():
        if n % 2:
            current = kv.get("counter").value
            try:
                ledger.acked(
                    kv.compare_and_swap("counter", current, str(int(current) + 1)), increment=True
                )
            except CompareFailed:
                continue
        else:
            key, value = f"blind/{n}-{i}", f"v{i}"
            ledger.acked(kv.put(key, value), blind=(key, value))
            i += 1


def test_sync_writes_apply_exactly_once_across_a_paused_leader(fresh: Cluster) -> None:
    c = fresh
    ledger = Ledger()
    errors: list[BaseException] = []
    old = c.leader()
    transport = CountingTransport()
    with Client(endpoints(c, old), transport=transport, retry=POLICY) as kv:
        ledger.acked(kv.create("counter", "0"))
        base = ledger.revisions[0] - 1
        stop = threading.Event()

        def guarded(n: int) -> None:
            try:
                sync_writer(kv, ledger, n, stop)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=guarded, args=(n,), daemon=True) for n in range(8)]
        for t in threads:
            t.start()
        try:
            c.wait_for("writes", lambda: ledger.writes >= 40, timeout=10)
            c.signal(old, signal.SIGSTOP)
            at_pause = ledger.writes
            c.leader(timeout=10, among=[i for i in (1, 2, 3) if i != old])
            c.wait_for("writes resume", lambda: ledger.writes >= at_pause + 40, timeout=15)
            c.signal(old, signal.SIGCONT)  # it wakes up with requests in flight, deposed
            at_wake = ledger.writes
            c.wait_for("writes go on", lambda: ledger.writes >= at_wake + 40, timeout=15)
        finally:
            c.signal(old, signal.SIGCONT)
            stop.set()
            for t in threads:
                t.join(timeout=25)
    assert not errors, errors
    assert transport.failures > 0, "the pause never hit a call in flight"
    check_exactly_once(c, ledger, base)


async def wait_for(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        await asyncio.sleep(0.02)


# -- the command line ---------------------------------------------------------------------------


def kv_cli(
    capsys: pytest.CaptureFixture[str], c: Cluster | None, *argv: str
) -> tuple[int, str, str]:
    where = ",".join(endpoints(c)) if c else f"http://127.0.0.1:{free_ports(1)[0]}"
    try:
        rc = main(["kv", *argv, "--endpoints", where, "--timeout", "3" if c else "0.5"])
    except SystemExit as e:  # argparse's usage errors
        rc = int(e.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def test_kv_commands_print_and_exit_as_documented(
    shared_cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    c = shared_cluster
    rc, out, _ = kv_cli(capsys, c, "put", "cmd/x", "hello")
    assert rc == 0 and out.startswith("OK created cmd/x at revision ")
    rc, out, _ = kv_cli(capsys, c, "put", "cmd/y", "one", "--create")
    assert rc == 0 and out.startswith("OK created cmd/y at revision ")
    rc, out, _ = kv_cli(capsys, c, "get", "cmd/x")
    assert (rc, out) == (0, "hello\n")
    rc, out, _ = kv_cli(capsys, c, "get", "cmd/x", "--json", "--consistency", "stale")
    assert rc == 0 and json.loads(out)["value"] == "hello"
    rc, _, err = kv_cli(capsys, c, "get", "cmd/missing")
    assert rc == 1 and "does not exist" in err
    rc, _, err = kv_cli(capsys, c, "put", "cmd/x", "new", "--prev-value", "wrong")
    assert rc == 1 and "holds 'hello'" in err
    rc, _, err = kv_cli(capsys, c, "put", "cmd/y", "two", "--create", "--json")
    assert rc == 1 and json.loads(err)["error"] == "cas_mismatch"
    rc, out, _ = kv_cli(capsys, c, "put", "cmd/x", "new", "--prev-value", "hello", "--json")
    assert rc == 0 and json.loads(out)["prev_value"] == "hello"
    rc, out, err = kv_cli(capsys, c, "ls", "cmd/")
    assert rc == 0 and out.splitlines()[0].split() == ["KEY", "REVISION", "VALUE"]
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["cmd/x", "cmd/y"]
    assert "(2 keys)" in err
    rc, out, _ = kv_cli(capsys, c, "ls", "cmd/", "--json", "--page-size", "1")
    assert rc == 0 and [i["key"] for i in json.loads(out)] == ["cmd/x", "cmd/y"]
    rc, out, _ = kv_cli(capsys, c, "ls", "cmd/", "--keys-only", "--limit", "1")
    assert (rc, out) == (0, "cmd/x\n")
    rc, out, _ = kv_cli(capsys, c, "del", "cmd/y")
    assert rc == 0 and out.startswith("OK deleted cmd/y")
    rc, _, _ = kv_cli(capsys, c, "del", "cmd/y")
    assert rc == 1
    # Usage: a bad argument (argparse), a key the nodes refuse (a control character).
    assert kv_cli(capsys, c, "ls", "--limit", "0")[0] == 2
    rc, _, err = kv_cli(capsys, c, "put", "cmd/\x01", "v")
    assert rc == 2 and "control character" in err
    # Nothing listening: unavailable.
    rc, _, err = kv_cli(capsys, None, "get", "cmd/x")
    assert rc == 3 and "no node could take the call" in err


def load_counter_example() -> Any:
    """examples/client/exactly_once_counter.py, the guide's complete example (docs/client.md)."""
    path = Path(__file__).resolve().parents[2] / "examples" / "client" / "exactly_once_counter.py"
    spec = importlib.util.spec_from_file_location("exactly_once_counter", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_guides_counter_example_counts_exactly_across_a_leader_kill(fresh: Cluster) -> None:
    c = fresh
    example = load_counter_example()
    old = c.leader()
    done = [0] * 4
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker(n: int, kv: Client) -> None:
        try:
            while not stop.is_set():
                example.increment(kv, "jobs/done")
                done[n] += 1
        except BaseException as e:
            errors.append(e)

    with Client(endpoints(c, old), retry=POLICY) as kv:
        threads = [threading.Thread(target=worker, args=(n, kv), daemon=True) for n in range(4)]
        for t in threads:
            t.start()
        try:
            c.wait_for("increments", lambda: sum(done) >= 20, timeout=10)
            c.kill(old)
            at_kill = sum(done)
            c.wait_for("increments resume", lambda: sum(done) >= at_kill + 20, timeout=15)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=25)
        assert not errors, errors
        assert int(kv.get("jobs/done").value) == sum(done)
