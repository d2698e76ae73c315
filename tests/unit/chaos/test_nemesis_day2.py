"""The day-2 and combined nemesis kinds against a fake lab that keeps state: the VIP's holders,
the member list, each host's data dir. Checks which commands run, in what order, on which
hosts, and what the history records."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import chaos.membership as membership
import chaos.nemesis as nemesis
from chaos import full_disk
from chaos.http_client import Answer
from chaos.nemesis import LabError, LabHosts, Nemesis, fault_kinds
from chaos.report import fault_windows
from chaos.workload import Recorder

HOSTS = LabHosts(
    "lab",
    {"n1": "10.9.0.21", "n2": "10.9.0.22", "n3": "10.9.0.23"},
    {"lb1": "10.9.0.31", "lb2": "10.9.0.32"},
    "10.9.0.10",
)
ADDRESS_HOST = {a: h for h, a in HOSTS.raft.items()}


class StatefulLab:
    """Stands in for ``lab.raftlab`` and the nodes' HTTP answers."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, *, vip_moves: bool = True, vip_kept: bool = False
    ) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.leader = "n1"
        self.vip = {"lb1"}
        self.vip_moves = vip_moves
        self.vip_kept = vip_kept  # a dead keepalived leaves the VIP on its host (no drop-in)
        self.roles = {1: "voter", 2: "voter", 3: "voter"}
        self.config_index = 5
        self.learner_reads = 0
        self.deletes: list[str] = []
        self.added: list[dict[str, Any]] = []
        self.wiped: list[str] = []
        self.on_tmpfs: set[str] = set()
        monkeypatch.setattr(nemesis, "lab_cli", self.lab_cli)
        monkeypatch.setattr(nemesis, "request", self.request)

    async def lab_cli(self, name: str, *args: str, timeout: float = 120.0) -> str:
        assert name == "lab"
        self.calls.append(args)
        if args[0] == "isolate":
            self._stopped(args[1])  # an isolated leader loses its leadership
        if args[0] != "exec":
            return ""
        host, command = args[1], args[3:]
        text = " ".join(command)
        if command[:2] == ("ip", "-4"):
            return f"2: host0 inet {HOSTS.vip}/32 scope global\n" if host in self.vip else ""
        if text.endswith(nemesis.KILL_KEEPALIVED):
            if not self.vip_kept:
                self.vip.discard(host)
            if self.vip_moves:
                self.vip.add(next(h for h in HOSTS.lb if h != host))
            return ""
        if command[-1] == full_disk.MOVE_TO_SMALL_DISK:
            self.on_tmpfs.add(host)
            return 'moved\n{"size": 335544320, "used": 1048576, "reserve": 268435456}\n'
        if command[-1] == full_disk.FILL:
            return '{"filled": 334495744, "left": 0}\n'
        if command[-1] == full_disk.RESTORE_DISK:
            self.on_tmpfs.discard(host)
            self._stopped(host)
        if command[-1] == membership.WIPE_AND_START_EXISTING:
            self.wiped.append(host)
        if "journalctl" in text:
            return "a log line\n"
        return ""

    async def request(
        self, base_url: str, method: str, path: str, body: Any = None, *_: Any, **__: Any
    ) -> Answer:
        await asyncio.sleep(0.005)  # answers take time, so concurrent faults interleave
        host = ADDRESS_HOST[urlsplit(base_url).hostname or ""]
        route = urlsplit(path).path
        self.calls.append((method, route, host))
        if route == "/primary":
            return Answer(200 if host == self.leader else 503, True)
        if route == "/replica":
            in_config = self.roles.get(int(host[1:])) == "voter"
            return Answer(200 if host != self.leader and in_config else 503, True)
        if route == "/admin/v1/leader/transfer":
            if body.get("to"):
                self.leader = f"n{body['to']}"
            return Answer(200, True)
        if route == "/admin/v1/members" and method == "GET":
            return Answer(200, True, body=json.dumps(self._members()).encode())
        if route.startswith("/admin/v1/members/") and method == "DELETE":
            member = int(route.rsplit("/", 1)[1])
            prev = int(parse_qs(urlsplit(path).query)["prev_index"][0])
            if prev != self.config_index:
                return Answer(409, True)
            self.deletes.append(host)
            self.roles.pop(member, None)
            self.config_index += 1
            return Answer(200, True)
        if route == "/admin/v1/members" and method == "POST":
            self.added.append(body)
            self.roles[body["id"]] = "learner"
            self.config_index += 1
            return Answer(200, True)
        return Answer(200, True)

    def _stopped(self, host: str) -> None:
        """A stopped leader hands leadership over (its SIGTERM transfer)."""
        if host == self.leader:
            self.leader = next(h for h in HOSTS.raft if h != host)

    def _members(self) -> dict[str, Any]:
        for member, role in list(self.roles.items()):
            if role == "learner":
                self.learner_reads += 1
                if self.learner_reads >= 2:  # the leader promotes it once caught up
                    self.roles[member] = "voter"
        return {
            "leader": int(self.leader[1:]),
            "config_index": self.config_index,
            "members": [{"id": m, "role": r} for m, r in sorted(self.roles.items())],
        }

    def execs(self) -> list[tuple[str, str]]:
        """(host, command) of each exec, a script named by its constant."""
        names = {
            full_disk.MOVE_TO_SMALL_DISK: "move",
            full_disk.FILL: "fill",
            full_disk.EMPTY: "empty",
            full_disk.RESTORE_DISK: "restore",
            membership.WIPE_AND_START_EXISTING: "wipe-existing",
            nemesis.KILL_KEEPALIVED: "kill-keepalived",
        }
        out = []
        for args in self.calls:
            if args[0] == "exec" and args[3:5] != ("ip", "-4"):
                command = args[3:]
                out.append((args[1], names.get(command[-1], " ".join(command))))
        return out


def _nemesis(kinds: list[str], seed: int = 1) -> Nemesis:
    return Nemesis(HOSTS, kinds, Recorder(), seed=seed, hold=0.0, quiet=0.0, combine_share=0.0)


def _records(n: Nemesis) -> list[tuple[str, str | None, str, str]]:
    return [(op.kind, op.value, op.outcome, op.note) for op in n.recorder.operations]


def test_new_kinds_are_named_by_their_groups_and_opt_in_until_proven() -> None:
    assert fault_kinds("lb") == ["lb-kill", "keepalived-kill"]
    assert fault_kinds("restart") == ["rolling-restart"]
    assert fault_kinds("membership") == ["membership"]
    assert "full-disk" in fault_kinds("disk")
    every = set(fault_kinds("all"))
    for kind in ("keepalived-kill", "rolling-restart", "membership", "full-disk", "bridge"):
        assert kind in nemesis.OPT_IN and kind not in every


def test_keepalived_kill_kills_the_vip_holder_and_sees_the_vip_move(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = StatefulLab(monkeypatch)
    n = _nemesis(["keepalived-kill"])
    asyncio.run(n.one_fault("keepalived-kill"))
    assert lab.execs() == [("lb1", "kill-keepalived"), ("lb1", "systemctl start keepalived")]
    (fault, heal) = _records(n)
    assert fault[:2] == ("fault", "keepalived-kill") and fault[3].startswith("lb1 VIP on lb2")
    assert heal[:2] == ("heal", "keepalived-kill") and "VIP on lb2 alone" in heal[3]
    assert not n.busy


def test_keepalived_kill_fails_when_the_vip_stays_on_no_other_balancer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    StatefulLab(monkeypatch, vip_moves=False)
    monkeypatch.setattr(nemesis, "VIP_MOVE_TIMEOUT", 0.2)
    n = _nemesis(["keepalived-kill"])
    with pytest.raises(LabError, match="no other balancer took the VIP"):
        asyncio.run(n.one_fault("keepalived-kill"))
    assert n.recorder.operations == [], "no fault claimed"


def test_keepalived_kill_fails_when_the_dead_holder_keeps_the_vip_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    StatefulLab(monkeypatch, vip_kept=True)
    monkeypatch.setattr(nemesis, "VIP_MOVE_TIMEOUT", 0.2)
    n = _nemesis(["keepalived-kill"])
    with pytest.raises(LabError, match=r"alone .* \(held by \['lb1', 'lb2'\]\)"):
        asyncio.run(n.one_fault("keepalived-kill"))
    assert n.recorder.operations == [], "no fault claimed"


def test_rolling_restart_restarts_followers_first_and_the_leader_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = StatefulLab(monkeypatch)
    lab.leader = "n2"
    restarted: list[str] = []
    original = lab.lab_cli

    async def restart_moves_leadership(name: str, *args: str, timeout: float = 120.0) -> str:
        if args[0] == "exec" and args[3:] == ("systemctl", "restart", "raftnode"):
            restarted.append(args[1])
            if args[1] == lab.leader:  # its SIGTERM hands leadership over
                lab.leader = "n1"
        return await original(name, *args, timeout=timeout)

    monkeypatch.setattr(nemesis, "lab_cli", restart_moves_leadership)
    n = _nemesis(["rolling-restart"])
    asyncio.run(n.one_fault("rolling-restart"))
    assert restarted == ["n1", "n3", "n2"]
    (fault, heal) = _records(n)
    assert fault[:2] == ("fault", "rolling-restart")
    assert heal[:2] == ("heal", "rolling-restart") and "n2 (leader)" in heal[3]
    assert not n.busy


def test_membership_removes_a_follower_wipes_it_and_adds_it_back_as_a_voter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = StatefulLab(monkeypatch)
    n = _nemesis(["membership"])
    asyncio.run(n.one_fault("membership"))
    ((target, script),) = lab.execs()
    assert target != "n1" and script == "wipe-existing", "a follower, wiped once"
    assert lab.deletes and target not in lab.deletes, "asked at a staying member"
    address = HOSTS.raft[target]
    assert lab.added == [
        {"id": int(target[1:]), "peer": f"{address}:9081", "client": f"{address}:8081"}
    ]
    assert lab.roles == {1: "voter", 2: "voter", 3: "voter"}
    (fault, heal) = _records(n)
    assert fault[:2] == ("fault", "membership") and "removed" in fault[3]
    assert heal[:2] == ("heal", "membership") and "voter in" in heal[3]
    assert not n.removed and not n.busy


def test_the_existing_start_script_puts_the_original_config_back() -> None:
    script = membership.WIPE_AND_START_EXISTING
    assert "trap 'mv -f" in script and script.index("trap") < script.index("sed -i")
    assert script.index("systemctl stop") < script.index("-delete") < script.index("start raftnode")


def test_heal_all_adds_back_a_node_left_out_and_never_wipes_a_member(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = StatefulLab(monkeypatch)
    lab.roles.pop(3)
    n = _nemesis(["membership"])
    n.removed |= {"n2", "n3"}  # n2 is still a member: only n3 is added back
    asyncio.run(n.heal_all())
    assert lab.wiped == ["n3"] and [a["id"] for a in lab.added] == [3]
    assert not n.removed


@pytest.mark.parametrize("seed", range(3))
def test_full_disk_moves_fills_empties_and_moves_back(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    lab = StatefulLab(monkeypatch)
    n = _nemesis(["full-disk"], seed)
    asyncio.run(n.one_fault("full-disk"))
    steps = lab.execs()
    assert len({host for host, _ in steps}) == 1, "all on one host"
    assert [s for _, s in steps] == ["move", "fill", "empty", "restore"]
    assert not lab.on_tmpfs and not n.small_disks and not n.busy
    (fault, heal) = _records(n)
    assert fault[:2] == ("fault", "full-disk") and "335544320-byte tmpfs" in fault[3]
    assert "0 left" in fault[3]
    assert heal[:2] == ("heal", "full-disk") and "back on its disk" in heal[3]


def test_full_disk_scripts_stay_bounded_and_never_touch_the_host_disk() -> None:
    move = full_disk.MOVE_TO_SMALL_DISK
    assert "mount -t tmpfs -o size=$size" in move and f"-gt {full_disk.MAX_BYTES}" in move
    assert move.index("-gt") < move.index("mount -t tmpfs"), "size checked before mounting"
    assert f"{full_disk.SMALL_DISK}/filler" in full_disk.FILL
    restore = full_disk.RESTORE_DISK
    assert restore.index(f"mountpoint -q {full_disk.DATA_DIR}") < restore.index("-delete")
    with pytest.raises(LabError, match="printed no figures"):
        full_disk.last_json("mount: permission denied", "move")


def test_heal_all_moves_a_small_disk_back(monkeypatch: pytest.MonkeyPatch) -> None:
    lab = StatefulLab(monkeypatch)
    n = _nemesis(["full-disk"])
    n.small_disks.add("n2")
    lab.on_tmpfs.add("n2")
    asyncio.run(n.heal_all())
    assert ("n2", "restore") in lab.execs() and not lab.on_tmpfs and not n.small_disks


def test_a_combined_round_overlaps_two_faults_on_different_hosts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = StatefulLab(monkeypatch)
    n = _nemesis(["membership", "isolate-minority"])
    n.hold = 0.3
    monkeypatch.setattr(nemesis, "partner_delay", lambda rng, first: 0.0)
    assert asyncio.run(n.one_round(("membership", "isolate-minority")))
    isolated = [args[1] for args in lab.calls if args[0] == "isolate"]
    ((member_target, _),) = lab.execs()
    assert len(isolated) == 1 and isolated[0] != member_target
    windows = fault_windows(n.recorder.operations)
    assert [w.kind for w in windows] == ["isolate-minority", "membership"], "partition first"
    assert max(w.start for w in windows) < min(w.end for w in windows), "the faults overlap"


def test_a_failed_fault_in_a_combined_round_is_recorded_with_its_kind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    StatefulLab(monkeypatch, vip_moves=False)
    monkeypatch.setattr(nemesis, "VIP_MOVE_TIMEOUT", 0.1)
    monkeypatch.setattr(nemesis, "partner_delay", lambda rng, first: 0.0)
    n = _nemesis(["kill-random", "keepalived-kill"])
    assert not asyncio.run(n.one_round(("kill-random", "keepalived-kill")))
    failed = [(op.value, op.outcome) for op in n.recorder.operations if op.outcome == "fail"]
    assert failed == [("keepalived-kill", "fail")]
    assert [op.value for op in n.recorder.operations if op.kind == "heal"] == ["kill-random"]


def test_pick_never_chooses_a_busy_host() -> None:
    n = _nemesis(["kill-random"])
    n.busy |= {"n1", "n2"}
    assert {n.pick(HOSTS.raft) for _ in range(20)} == {"n3"}
    n.busy.add("n3")
    with pytest.raises(LabError, match="no free host"):
        n.pick(HOSTS.raft)


def test_long_kinds_are_not_started_too_close_to_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = StatefulLab(monkeypatch)
    n = _nemesis(["membership", "transfer-leader"])
    asyncio.run(n.run(2.0))  # far less than membership's SECONDS_NEEDED
    assert not lab.wiped
    values = [op.value for op in n.recorder.operations]
    assert "transfer-leader" in values and set(values) <= {"transfer-leader", "heal-all"}
    alone = _nemesis(["membership"])
    asyncio.run(alone.run(2.0))
    assert [op.value for op in alone.recorder.operations] == ["heal-all"], "nothing fits"


def test_a_leader_kind_beside_a_fault_that_holds_the_leader_takes_a_free_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = StatefulLab(monkeypatch)
    n = _nemesis(["kill-leader"])
    n.busy.add("n1")  # e.g. cut-one-way holds the leader
    monkeypatch.setattr(nemesis.Nemesis, "leader", _no_leader)
    asyncio.run(n.one_fault("kill-leader"))
    killed = [host for host, command in lab.execs() if "kill -9" in command]
    assert len(killed) == 1 and killed[0] in {"n2", "n3"}


async def _no_leader(self: Nemesis, timeout: float = 20.0) -> str:
    raise LabError("no single leader")


FIVE = LabHosts(
    "lab",
    {f"n{i}": f"10.9.0.{20 + i}" for i in range(1, 6)},
    {"lb1": "10.9.0.31", "lb2": "10.9.0.32"},
    "10.9.0.10",
)


@pytest.mark.parametrize("seed", range(4))
def test_bridge_cuts_every_pair_across_the_halves_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    lab = StatefulLab(monkeypatch)
    n = Nemesis(FIVE, ["bridge"], Recorder(), seed=seed, hold=0.0, quiet=0.0)
    asyncio.run(n.one_fault("bridge"))
    cuts = [frozenset(args[1:]) for args in lab.calls if args[0] == "cut"]
    heals = [args[1] for args in lab.calls if args[0] == "heal"]
    (fault, heal) = _records(n)
    middle = fault[3].split()[0]
    halves = fault[3].split(" between ")[1].split(" | ")
    left, right = (set(h.split(",")) for h in halves)
    assert len(left) == len(right) == 2 and middle not in left | right
    assert set(cuts) == {frozenset({a, b}) for a in left for b in right} and len(cuts) == 4
    assert set(heals) == left, "healing one half removes every cut"
    assert heal[:2] == ("heal", "bridge") and not n.busy


def test_bridge_needs_three_free_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    StatefulLab(monkeypatch)
    n = _nemesis(["bridge"])
    n.busy.add("n2")
    with pytest.raises(LabError, match="needs three free Raft nodes"):
        asyncio.run(n.one_fault("bridge"))


@pytest.mark.parametrize(("hosts", "size"), [(HOSTS, 1), (FIVE, 2)])
def test_isolate_minority_cuts_off_a_minority_of_the_nodes(
    monkeypatch: pytest.MonkeyPatch, hosts: LabHosts, size: int
) -> None:
    lab = StatefulLab(monkeypatch)
    n = Nemesis(hosts, ["isolate-minority"], Recorder(), seed=2, hold=0.0, quiet=0.0)
    asyncio.run(n.one_fault("isolate-minority"))
    isolated = [args[1] for args in lab.calls if args[0] == "isolate"]
    healed = [args[1] for args in lab.calls if args[0] == "heal"]
    assert len(set(isolated)) == size and healed == isolated
    assert [w.kind for w in fault_windows(n.recorder.operations)] == ["isolate-minority"]
