"""Leases, ``Lock`` and ``Election`` from ``raftnode.client`` on real processes, with the
leader SIGKILLed while contenders hold, wait and renew; and ``raftnode lease|lock``.

The witnesses: each contender records when it entered and left its critical section (one
clock: the contenders are threads of this process) and what fencing revision it held, and
writes to the store only through a transaction guarded by its fencing revision. No two
sections overlap, the fencing revisions strictly increase in the order the sections ran, and
every guarded write applied (the store agreed the writer held the lock at that revision).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from raftnode.cli import main
from raftnode.client import (
    AsyncClient,
    AsyncElection,
    AsyncLock,
    Client,
    Compare,
    LeaderInfo,
    NotFound,
    TxnOp,
)
from raftnode.client.concurrency import Election, Lock
from tests.integration.cluster import Cluster
from tests.integration.test_client import POLICY, endpoints
from tests.integration.test_client_watch_txn import load_example
from tests.integration.test_watch import cluster_with

TTL = 3


@pytest.fixture
def leased() -> Iterator[Cluster]:
    """A cluster whose store keeps leases (the format upgrade happened) and whose watches
    send progress often (waiters re-check their deadline)."""
    with cluster_with(watch={"progress_ms": 200}) as c:
        yield c


@dataclass
class Section:
    who: int
    entered: float
    left: float
    fencing: int


def contend(
    urls: list[str],
    who: int,
    stop: threading.Event,
    sections: list[Section],
    errors: list[BaseException],
    take: Callable[[Client], tuple[Callable[[], int], Callable[[], None], Callable[[], Compare]]],
) -> None:
    """Take the lock (or leadership) in a loop until ``stop``; record each section."""
    try:
        with Client(urls, retry=POLICY) as kv:
            acquire, release, guard = take(kv)
            while not stop.is_set():
                fencing = acquire()
                entered = time.monotonic()
                result = kv.txn([guard()], [TxnOp.put("fenced/last", f"{who}:{fencing}")])
                assert result.succeeded, f"contender {who}: the store says it does not hold"
                time.sleep(0.05)
                left = time.monotonic()
                release()
                sections.append(Section(who, entered, left, fencing))
    except BaseException as e:  # reported by the test
        errors.append(e)


def check_mutual_exclusion(sections: list[Section]) -> None:
    ordered = sorted(sections, key=lambda s: s.entered)
    for before, after in itertools.pairwise(ordered):
        assert after.entered >= before.left, f"sections overlap: {before} and {after}"
        assert after.fencing > before.fencing, f"fencing went back: {before} then {after}"


def run_contenders(
    c: Cluster,
    take: Callable[[Client], tuple[Callable[[], int], Callable[[], None], Callable[[], Compare]]],
    contenders: int = 3,
) -> list[Section]:
    old = c.leader()
    urls = endpoints(c, old)
    stop = threading.Event()
    sections: list[Section] = []
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=contend, args=(urls, n, stop, sections, errors, take), daemon=True)
        for n in range(contenders)
    ]
    for t in threads:
        t.start()
    try:
        c.wait_for("sections before the kill", lambda: len(sections) >= 10, timeout=20)
        before = len(sections)
        c.kill(old)
        c.wait_for("sections after the kill", lambda: len(sections) >= before + 10, timeout=30)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads), "a contender hung"
    assert len({s.who for s in sections}) == contenders, "some contender never got in"
    return sections


def test_lock_is_never_held_twice_and_fencing_increases_across_a_leader_kill(
    leased: Cluster,
) -> None:
    def take(
        kv: Client,
    ) -> tuple[Callable[[], int], Callable[[], None], Callable[[], Compare]]:
        lock = Lock(kv, "locks/job", ttl=TTL)
        return (lambda: lock.acquire(timeout=30)), lock.release, lock.guard

    sections = run_contenders(leased, take)
    check_mutual_exclusion(sections)
    with Client(endpoints(leased)) as kv:
        last = max(sections, key=lambda s: s.fencing)
        assert kv.get("fenced/last").value == f"{last.who}:{last.fencing}"
        assert kv.count("locks/job/").count == 0  # every release deleted its key


def test_election_has_one_leader_at_a_time_across_a_leader_kill(leased: Cluster) -> None:
    def take(
        kv: Client,
    ) -> tuple[Callable[[], int], Callable[[], None], Callable[[], Compare]]:
        election = Election(kv, "elect/worker", ttl=TTL)
        me = f"worker-{id(election)}"

        def campaign() -> int:
            revision = election.campaign(me, timeout=30)
            info = election.leader()
            assert info is not None and info.value == me and info.revision == revision
            assert election.is_leader
            return revision

        return campaign, election.resign, election.guard

    sections = run_contenders(leased, take)
    check_mutual_exclusion(sections)
    with Client(endpoints(leased)) as kv:
        assert Election(kv, "elect/worker").leader() is None  # everyone resigned


def test_lock_acquire_times_out_and_leaves_nothing_behind(leased: Cluster) -> None:
    with Client(endpoints(leased), retry=POLICY) as kv:
        holder = Lock(kv, "locks/t", ttl=TTL)
        first = holder.acquire(timeout=10)
        waiter = Lock(kv, "locks/t", ttl=TTL)
        started = time.monotonic()
        with pytest.raises(Exception, match="not first within the timeout"):
            waiter.acquire(timeout=1.0)
        assert time.monotonic() - started < 5
        assert kv.count("locks/t/").count == 1  # the waiter's key went with its lease
        holder.release()
        with Lock(kv, "locks/t", ttl=TTL, timeout=10) as again:
            assert again.fencing_revision is not None and again.fencing_revision > first


def test_lease_keep_alive_holds_keys_across_a_leader_kill(leased: Cluster) -> None:
    c = leased
    old = c.leader()
    lost: list[str] = []
    with Client(endpoints(c, old), retry=POLICY) as kv:
        lease = kv.grant_lease(2, on_lost=lambda gone: lost.append(gone.lost_reason or ""))
        kv.put("svc/a", "10.0.0.1", lease=lease.id)
        assert kv.lease_info(lease.id).keys == ("svc/a",)
        assert lease.id in [s.id for s in kv.leases()]
        c.kill(old)
        time.sleep(3 * 2)  # three TTLs, an election among them
        assert kv.get("svc/a").value == "10.0.0.1"
        assert lease.alive and not lease.lost.is_set() and not lost
        assert lease.revoke() is True
        with pytest.raises(NotFound):
            kv.get("svc/a")
        assert kv.revoke_lease(lease.id) is False  # already gone
        assert not lost  # a revoke is not a loss


def test_a_lease_that_ends_is_reported_lost(leased: Cluster) -> None:
    with Client(endpoints(leased), retry=POLICY) as kv:
        lost = threading.Event()
        lease = kv.grant_lease(3, on_lost=lambda _: lost.set())
        kv.revoke_lease(lease.id)  # someone else revokes it
        assert lost.wait(5) and lease.lost.is_set() and not lease.alive
        assert "no longer holds" in (lease.lost_reason or "")


def test_a_killed_lock_holder_process_loses_the_lock_within_its_ttl(leased: Cluster) -> None:
    urls = ",".join(endpoints(leased))
    holder = subprocess.Popen(
        [sys.executable, "-m", "raftnode.cli", "lock", "locks/p", "--ttl", "2",
         "--endpoints", urls, "--", sys.executable, "-c", "import time; time.sleep(60)"],
        start_new_session=True,
    )  # fmt: skip
    try:
        with Client(urls, retry=POLICY) as kv:
            leased.wait_for("the holder's key", lambda: kv.count("locks/p/").count == 1, timeout=20)
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait(10)
            started = time.monotonic()
            fencing = Lock(kv, "locks/p", ttl=TTL).acquire(timeout=20)
            assert fencing > 0
            assert time.monotonic() - started < 2 + 5  # the TTL, and a little
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(10)


def cli(c: Cluster, *argv: str) -> int:
    return main([*argv, "--endpoints", ",".join(endpoints(c))])


def test_lease_grant_ls_revoke_on_the_command_line(
    leased: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(leased, "lease", "grant", "30", "--json") == 0
    lease = json.loads(capsys.readouterr().out)["id"]
    assert cli(leased, "lease", "ls") == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["ID", "TTL", "GRANTED"]
    assert any(line.split()[0] == str(lease) for line in table[1:])
    assert cli(leased, "lease", "keepalive", str(lease), "--once", "--json") == 0
    assert json.loads(capsys.readouterr().out)["id"] == lease
    assert cli(leased, "kv", "put", "svc/cli", "up", "--lease", str(lease)) == 0
    capsys.readouterr()
    assert cli(leased, "lease", "revoke", str(lease)) == 0
    assert f"lease {lease} revoked" in capsys.readouterr().out
    assert cli(leased, "kv", "get", "svc/cli") == 1  # went with its lease
    capsys.readouterr()
    assert cli(leased, "kv", "put", "svc/cli", "up", "--lease", str(lease), "--json") == 1
    assert json.loads(capsys.readouterr().err)["error"] == "lease_not_found"
    assert cli(leased, "lease", "revoke", str(lease), "--json") == 1
    assert json.loads(capsys.readouterr().err)["error"] == "lease_not_found"
    assert cli(leased, "lease", "ls", "--json") == 0
    assert lease not in [s["id"] for s in json.loads(capsys.readouterr().out)["leases"]]


def test_lock_runs_the_command_with_its_fencing_revision_and_exit_code(
    leased: Cluster, capfd: pytest.CaptureFixture[str]
) -> None:
    script = "import os, sys; print('fencing', os.environ['RAFTNODE_LOCK_FENCING']); sys.exit(7)"
    urls = ",".join(endpoints(leased))
    rc = main(["lock", "locks/cli", "--ttl", "3", "--endpoints", urls, "--",
               sys.executable, "-c", script])  # fmt: skip
    assert rc == 7
    out = capfd.readouterr().out
    assert int(out.split("fencing ")[1].split()[0]) > 0
    with Client(urls) as kv:
        assert kv.count("locks/cli/").count == 0  # released
        held = Lock(kv, "locks/cli", ttl=TTL)
        held.acquire(timeout=10)
        try:
            rc = main(["lock", "locks/cli", "--timeout", "1", "--json", "--endpoints", urls,
                       "--", sys.executable, "-c", "pass"])  # fmt: skip
            assert rc == 1
            assert json.loads(capfd.readouterr().err)["error"] == "lock_timeout"
        finally:
            held.release()


def test_async_lock_election_and_lease_across_a_leader_kill(leased: Cluster) -> None:
    c = leased
    old = c.leader()
    urls = endpoints(c, old)

    async def run() -> None:
        async with AsyncClient(urls, retry=POLICY) as kv:
            lease = await kv.grant_lease(2)
            await kv.put("svc/async", "up", lease=lease.id)
            sections: list[Section] = []

            async def contender(who: int) -> None:
                for _ in range(4):
                    async with AsyncLock(kv, "locks/async", ttl=TTL, timeout=30) as lock:
                        entered = time.monotonic()
                        result = await kv.txn([lock.guard()], [TxnOp.put("fenced/a", str(who))])
                        assert result.succeeded
                        await asyncio.sleep(0.05)
                        assert lock.fencing_revision is not None
                        sections.append(
                            Section(who, entered, time.monotonic(), lock.fencing_revision)
                        )

            async def killer() -> None:
                while len(sections) < 3:
                    await asyncio.sleep(0.02)
                await asyncio.to_thread(c.kill, old)

            await asyncio.wait_for(asyncio.gather(*(contender(n) for n in range(3)), killer()), 45)
            check_mutual_exclusion(sections)
            assert len(sections) == 12
            assert (await kv.get("svc/async")).value == "up" and lease.alive

            election = AsyncElection(kv, "elect/async", ttl=TTL)
            seen: list[LeaderInfo | None] = []

            async def watch_leaders() -> None:
                async for info in AsyncElection(kv, "elect/async").observe():
                    seen.append(info)
                    if info is not None:
                        return

            observer = asyncio.ensure_future(watch_leaders())
            await asyncio.sleep(0.5)
            revision = await election.campaign("me", timeout=10)
            await asyncio.wait_for(observer, 15)
            last = seen[-1]
            assert seen[0] is None and last is not None
            assert (last.value, last.revision) == ("me", revision)
            assert election.is_leader
            await election.resign()
            assert await election.leader() is None
            assert await lease.revoke()

    asyncio.run(run())


def test_the_guides_service_registration_disappears_when_its_process_dies(
    leased: Cluster,
) -> None:
    example = load_example("service_registration")
    c = leased
    old = c.leader()
    urls = ",".join(endpoints(c, old))
    script = Path(__file__).resolve().parents[2] / "examples" / "client" / "service_registration.py"
    proc = subprocess.Popen(
        [sys.executable, str(script), "--endpoints", urls,
         "register", "api", "api-1", "10.0.0.5:8000", "--ttl", "2"],
        start_new_session=True,
    )  # fmt: skip
    try:
        with Client(urls, retry=POLICY) as kv:
            c.wait_for("the registration", lambda: example.instances(kv, "api"), timeout=20)
            c.kill(old)
            time.sleep(3 * 2)  # three TTLs across the election: the keep-alive holds it
            assert example.instances(kv, "api") == {"api-1": "10.0.0.5:8000"}
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            killed = time.monotonic()
            c.wait_for("the entry to go", lambda: not example.instances(kv, "api"), timeout=15)
            assert time.monotonic() - killed < 2 + 5
            # A registration that stops on purpose revokes: its entry goes at once.
            registration = example.Registration(kv, "api", "api-2", "10.0.0.6:8000", 2)
            stop = threading.Event()
            runner = threading.Thread(target=registration.run, args=(stop,), daemon=True)
            runner.start()
            c.wait_for("api-2", lambda: "api-2" in example.instances(kv, "api"), timeout=10)
            stop.set()
            runner.join(10)
            assert example.instances(kv, "api") == {}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_the_guides_elected_worker_works_only_while_elected_across_kills(
    leased: Cluster,
) -> None:
    example = load_example("elected_worker")
    c = leased
    old = c.leader()
    urls = endpoints(c, old)
    clients = [Client(urls, retry=POLICY) for _ in range(3)]
    workers = [
        example.ElectedWorker(kv, f"w{n}", ttl=2, interval=0.05) for n, kv in enumerate(clients)
    ]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for t in threads:
        t.start()
    with Client(urls, retry=POLICY) as kv:

        def reports() -> list[tuple[str, int]]:
            items = sorted(kv.range("jobs/report/"), key=lambda x: x.mod_revision or 0)
            return [(v.split()[0], int(v.split()[1])) for v in (x.value for x in items)]

        try:
            c.wait_for("work", lambda: len(reports()) >= 5, timeout=20)
            c.kill(old)
            count = len(reports())
            c.wait_for("work after the kill", lambda: len(reports()) >= count + 5, timeout=30)
            # The elected worker's process "dies": its keep-alives stop, its lease expires.
            leader = next(w for w in workers if w.election.is_leader)
            assert leader.election.lease is not None
            leader.election.lease.close()
            stalled = time.monotonic()
            c.wait_for(
                "another worker to lead",
                lambda: any(name != leader.identity for name, _ in reports()[-3:]),
                timeout=20,
            )
            assert time.monotonic() - stalled < 2 + 8
        finally:
            for w in workers:
                w.stop()
            for t in threads:
                t.join(15)
        done = reports()
    for kv_ in clients:
        kv_.close()
    assert not any(t.is_alive() for t in threads)
    fencings = [f for _, f in done]
    assert fencings == sorted(fencings), "a deposed leader's work applied after its successor's"
    owners: dict[int, set[str]] = {}
    for name, fencing in done:
        owners.setdefault(fencing, set()).add(name)
    assert all(len(names) == 1 for names in owners.values()), owners
    assert len({name for name, _ in done}) >= 2  # leadership moved
