"""The nemesis' new kinds against a fake lab: which commands they run, in what order, and what
they record (a fault and its heal, or a failed fault and a heal-all)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import chaos.nemesis as nemesis
from chaos.http_client import Answer
from chaos.nemesis import LabError, LabHosts, Nemesis, fault_kinds
from chaos.report import fault_windows
from chaos.workload import Recorder

HOSTS = LabHosts(
    "lab",
    {"n1": "10.9.0.21", "n2": "10.9.0.22", "n3": "10.9.0.23"},
    {"lb1": "10.9.0.31"},
    "10.9.0.10",
)
TORN = {"segment": "0000000000000003-0000000000000101.wal", "size": 900, "frame": [700, 900]}
LOG_LINE = 'level=warning logger=raftnode.storage.wal msg="wal torn tail truncated"'


class FakeLab:
    """Stands in for ``lab.raftlab``: records every command, answers health checks."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, replica_ok: bool = True) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.posts: list[tuple[str, str, Any]] = []
        self.replica_ok = replica_ok
        monkeypatch.setattr(nemesis, "lab_cli", self.lab_cli)
        monkeypatch.setattr(nemesis, "request", self.request)

    async def lab_cli(self, name: str, *args: str, timeout: float = 120.0) -> str:
        assert name == "lab"
        self.calls.append(args)
        if "python3" in args:
            mode = args[args.index("python3") + 4]  # python3 -c SCRIPT WAL_DIR MODE SEED
            return json.dumps({**TORN, "mode": mode, "torn_bytes": 77}) + "\n"
        if "journalctl" in " ".join(args):
            return LOG_LINE + "\n"
        return ""

    async def request(
        self, base_url: str, method: str, path: str, body: Any = None, *_: Any, **__: Any
    ) -> Answer:
        if path == "/primary":
            return Answer(200 if base_url.startswith("http://10.9.0.21:") else 503, True)
        if path == "/replica":
            return Answer(200 if self.replica_ok else 503, True)
        if path == "/admin/v1/members":
            return Answer(200, True, body=b'{"members": [{"id": 3, "lag": 41}]}')
        if method == "POST":
            self.posts.append((base_url, path, body))
            self.calls.append(("POST", path))
            return Answer(503, True)
        return Answer(404, True)

    def commands(self) -> list[tuple[str, ...]]:
        """Each call cut down to its verb and host (and unit), the way a reader checks order."""
        short: list[tuple[str, ...]] = []
        for args in self.calls:
            if args[0] == "exec":
                command = args[3:]
                short.append(("exec", args[1], "script" if "python3" in command else command[1]))
            else:
                short.append(args)
        return short


def _nemesis(kinds: list[str], seed: int = 1) -> Nemesis:
    return Nemesis(HOSTS, kinds, Recorder(), seed=seed, hold=0.0, quiet=0.0)


def _nemesis_records(n: Nemesis) -> list[tuple[str, str | None, str]]:
    return [(op.kind, op.value, op.note) for op in n.recorder.operations]


def test_all_leaves_opt_in_kinds_out_and_groups_name_them() -> None:
    every = fault_kinds("all")
    assert {"cut-one-way", "wal-tail", "transfer-during-partition"} <= set(every)
    assert "wal-lost-tail" not in every
    assert "transfer-during-partition" in fault_kinds("transfer")
    assert fault_kinds("disk") == ["wal-tail", "wal-lost-tail", "full-disk"]
    assert "cut-one-way" in fault_kinds("partition")
    assert fault_kinds("wal-tail,cut-one-way") == ["wal-tail", "cut-one-way"]
    # all and opt-in kinds together, each kind once
    assert fault_kinds("all,membership,kill") == [*every, "membership"]


@pytest.mark.parametrize("seed", range(6))
def test_cut_one_way_drops_one_direction_between_the_leader_and_a_follower(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    lab = FakeLab(monkeypatch)
    n = _nemesis(["cut-one-way"], seed)
    asyncio.run(n.one_fault("cut-one-way"))
    (cut, heal) = lab.calls
    assert cut[:2] == ("cut", "--one-way")
    sender, receiver = cut[2:]
    assert "n1" in (sender, receiver) and sender != receiver, "the leader is one end"
    assert heal == ("heal", receiver)
    records = _nemesis_records(n)
    assert records == [
        ("fault", "cut-one-way", f"{receiver} {sender}->{receiver} dropped"),
        ("heal", "cut-one-way", f"{receiver} {sender}->{receiver} flows"),
    ]
    assert [w.kind for w in fault_windows(n.recorder.operations)] == ["cut-one-way"]


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("wal-tail", "(900 bytes): a torn frame of 77 bytes appended"),
        ("wal-lost-tail", "cut to 777 bytes: last frame 700-900 lost 123 of its 200 bytes"),
    ],
)
def test_wal_damage_stops_a_follower_damages_its_log_starts_it_and_waits(
    monkeypatch: pytest.MonkeyPatch, kind: str, said: str
) -> None:
    lab = FakeLab(monkeypatch)
    n = _nemesis([kind])
    asyncio.run(n.one_fault(kind))
    (stop, script, start) = lab.commands()
    target = stop[1]
    assert target != "n1", "never the leader"
    assert stop == ("exec", target, "stop") and start == ("exec", target, "start")
    assert script == ("exec", target, "script")
    (fault, heal) = _nemesis_records(n)
    assert fault[:2] == ("fault", kind) and said in fault[2]
    assert heal[:2] == ("heal", kind) and "caught up in" in heal[2]


def test_wal_tail_fails_with_evidence_when_the_node_does_not_come_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    FakeLab(monkeypatch, replica_ok=False)
    monkeypatch.setattr(nemesis, "REJOIN_TIMEOUT", 0.2)
    n = _nemesis(["wal-tail"])
    with pytest.raises(LabError, match="neither a caught-up replica nor the leader") as failure:
        asyncio.run(n.one_fault("wal-tail"))
    assert '"lag": 41' in str(failure.value) and LOG_LINE in str(failure.value)
    assert [kind for kind, _, _ in _nemesis_records(n)] == ["fault"], "no heal claimed"


def test_wal_tail_heals_when_the_damaged_node_comes_back_as_the_leader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second long run's one nemesis failure: n1, restarted after its torn tail, won the
    election (a combined round killed the leader) and was refused as "not a replica"."""
    lab = FakeLab(monkeypatch, replica_ok=False)
    answer = lab.request

    async def the_restarted_node_leads(
        base_url: str, method: str, path: str, *a: Any, **k: Any
    ) -> Answer:
        started = [c[1] for c in lab.calls if c[0] == "exec" and c[-2:] == ("start", "raftnode")]
        if path == "/primary" and any(HOSTS.raft[h] in base_url for h in started):
            return Answer(200, True)
        return await answer(base_url, method, path, *a, **k)

    monkeypatch.setattr(nemesis, "request", the_restarted_node_leads)
    monkeypatch.setattr(nemesis, "REJOIN_TIMEOUT", 2.0)
    n = _nemesis(["wal-tail"])
    asyncio.run(n.one_fault("wal-tail"))
    assert [kind for kind, _, _ in _nemesis_records(n)] == ["fault", "heal"]


def test_a_failed_fault_is_recorded_and_the_run_still_ends_healed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = FakeLab(monkeypatch, replica_ok=False)
    monkeypatch.setattr(nemesis, "REJOIN_TIMEOUT", 0.05)
    n = _nemesis(["wal-tail"])
    asyncio.run(n.run(0.3))
    failed = [op for op in n.recorder.operations if op.outcome == "fail"]
    assert failed and all(op.value == "wal-tail" for op in failed)
    last = n.recorder.operations[-1]
    assert (last.kind, last.value) == ("heal", "heal-all")
    tail = lab.commands()[-6:]
    assert tail[0] == ("heal",)
    assert {c[1] for c in tail[1:] if c[2] == "start"} == {"n1", "n2", "n3", "lb1"}
    assert [c[1:] for c in tail[1:] if c[1] == "lb1"] == [("lb1", "start")] * 2, (
        "haproxy, keepalived"
    )


@pytest.mark.parametrize("seed", range(4))
def test_transfer_during_partition_asks_the_leader_while_a_follower_is_cut_off(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    lab = FakeLab(monkeypatch)
    n = _nemesis(["transfer-during-partition"], seed)
    asyncio.run(n.one_fault("transfer-during-partition"))
    (isolate, post, heal) = lab.calls
    assert isolate[0] == "isolate" and isolate[1] in {"n2", "n3"}, "a follower, never the leader"
    assert post == ("POST", "/admin/v1/leader/transfer")
    ((url, _, body),) = lab.posts
    assert url == "http://10.9.0.21:8081" and body["to"] in {2, 3}
    assert heal == ("heal", isolate[1]), "the partition is healed after the transfer"
    (fault, healed) = _nemesis_records(n)
    assert fault[:2] == ("fault", "transfer-during-partition") and "status=503" in fault[2]
    assert healed[:2] == ("heal", "transfer-during-partition")


def test_node_ids_come_from_lab_host_names() -> None:
    assert nemesis.node_id("n3") == 3
    with pytest.raises(LabError, match="not a raft node"):
        nemesis.node_id("lb1")
