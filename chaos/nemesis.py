"""Faults on lab hosts, driven through the lab CLI (``python3 -m lab.raftlab``).

A schedule picks faults from the enabled groups until its deadline: quiet, fault, hold, heal,
quiet. Every fault and every heal is recorded into the history (process ``nemesis``), and
whatever happens the schedule ends with everything healed (``heal_all`` in a finally).

Fault kinds (group in brackets):
- ``kill-random``, ``kill-leader`` [kill]: SIGKILL of raftnode (systemd restarts it);
- ``pause-leader`` [pause]: SIGSTOP of the leader's raftnode for longer than an election timeout;
- ``isolate-leader``, ``isolate-minority`` [partition]: nftables DROP between the host and every
  other lab host (the controller still reaches it: clients keep talking to the cut-off side);
- ``cut-one-way`` [partition]: packets from the leader to a random follower, or from the follower
  to the leader, dropped on arrival; the other direction flows;
- ``wal-tail`` [disk]: a random follower stopped cleanly (systemctl stop), a torn frame appended
  to its newest WAL segment (a write that never completed, so never acknowledged: ``torn_tail``),
  started again; the heal waits until it serves as a caught-up replica and fails the fault if it
  does not within a bound;
- ``wal-lost-tail`` [disk]: the same, but the segment cut part-way into its last complete frame:
  a disk losing acknowledged data, outside Raft's model (see ``torn_tail``); opt-in, to show what
  happens, not a fault the cluster promises to survive;
- ``lb-kill`` [lb]: SIGKILL of HAProxy on the VIP holder (keepalived moves the VIP);
- ``transfer-leader`` [transfer]: a leadership transfer through the admin API;
- ``transfer-during-partition`` [transfer]: a follower isolated, then a leadership transfer asked
  of the leader, to the isolated follower or to the reachable one (the former must fail cleanly
  and leave the leader serving), the partition healed after the hold.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass

from .history import NEMESIS_PROCESS, Operation
from .http_client import request
from .torn_tail import Mode, describe, script_argv
from .workload import Recorder

GROUPS: dict[str, tuple[str, ...]] = {
    "kill": ("kill-random", "kill-leader"),
    "pause": ("pause-leader",),
    "partition": ("isolate-leader", "isolate-minority", "cut-one-way"),
    "disk": ("wal-tail", "wal-lost-tail"),
    "lb": ("lb-kill",),
    "transfer": ("transfer-leader", "transfer-during-partition"),
}
OPT_IN = frozenset({"wal-lost-tail"})
"""Kinds left out of ``all`` (named explicitly or by their group): a fault outside the model."""
CLIENT_PORT = 8081
HEALTH_PORT = 10001
JOURNAL_WITHOUT_HEALTH_CHECKS = (
    "journalctl -u raftnode --no-pager -n 2000 | grep -v 'msg=\"health check\"' | tail -n 12"
)
REJOIN_TIMEOUT = 60.0
"""How long a restarted node may take to serve as a caught-up replica (/replica)."""


def fault_kinds(spec: str) -> list[str]:
    """``all`` or a comma list of groups (kill, pause, partition, disk, lb, transfer) or kinds.

    ``all`` leaves out the OPT_IN kinds; a group or a kind named explicitly includes them.
    """
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if names == ["all"]:
        return [kind for kinds in GROUPS.values() for kind in kinds if kind not in OPT_IN]
    every = {kind for kinds in GROUPS.values() for kind in kinds}
    chosen: list[str] = []
    for name in names:
        if name in GROUPS:
            chosen += GROUPS[name]
        elif name in every:
            chosen.append(name)
        else:
            raise ValueError(
                f"NEMESIS: unknown fault {name!r}; use all, or groups {sorted(GROUPS)} "
                f"or kinds {sorted(every)}"
            )
    if not chosen:
        raise ValueError("NEMESIS: no fault named")
    return chosen


class LabError(RuntimeError):
    pass


@dataclass(frozen=True)
class LabHosts:
    name: str
    raft: dict[str, str]  # host name -> address
    lb: dict[str, str]
    vip: str

    @property
    def endpoints(self) -> list[str]:
        """The VIP and every node's client port."""
        return [f"http://{self.vip}:8080"] + [
            f"http://{a}:{CLIENT_PORT}" for a in self.raft.values()
        ]


async def lab_cli(name: str, *args: str, timeout: float = 120.0) -> str:
    process = await asyncio.create_subprocess_exec(
        "python3",
        "-m",
        "lab.raftlab",
        "--name",
        name,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise LabError(f"lab.raftlab {' '.join(args)}: no answer in {timeout:.0f} s") from None
    text = out.decode(errors="replace")
    if process.returncode != 0:
        raise LabError(f"lab.raftlab {' '.join(args)} failed ({process.returncode}): {text}")
    return text


async def lab_hosts(name: str) -> LabHosts:
    instances = json.loads(await lab_cli(name, "inventory", "--format", "molecule"))
    status = await lab_cli(name, "status")
    vip = status.split(" vip ", 1)[1].split()[0]
    raft = {
        str(i["instance"]): str(i["address"])
        for i in instances
        if str(i["instance"]).startswith("n")
    }
    lb = {
        str(i["instance"]): str(i["address"])
        for i in instances
        if str(i["instance"]).startswith("lb")
    }
    return LabHosts(name, raft, lb, vip)


async def kill9(lab: str, host: str, unit: str) -> None:
    """SIGKILL of a unit's main process. (``systemctl kill`` fails on these guests when it
    signals a unit's other processes: cgroup v1 under nspawn answers EIO.)"""
    await lab_cli(
        lab,
        "exec",
        host,
        "--",
        "sh",
        "-c",
        f'pid=$(systemctl show -p MainPID --value {unit}) && [ "$pid" -gt 0 ] && kill -9 "$pid"',
    )


def node_id(host: str) -> int:
    """The raftnode id of a lab host: n1 is 1 (inventories/lab/hosts.yml)."""
    if not (host.startswith("n") and host[1:].isdigit()):
        raise LabError(f"lab host {host!r} is not a raft node (n1, n2, ...)")
    return int(host[1:])


class Nemesis:
    def __init__(
        self,
        hosts: LabHosts,
        kinds: Sequence[str],
        recorder: Recorder,
        seed: int = 0,
        hold: float = 8.0,
        quiet: float = 5.0,
    ) -> None:
        self.hosts, self.kinds, self.recorder = hosts, list(kinds), recorder
        self.rng = random.Random(seed)
        self.hold, self.quiet = hold, quiet
        self.paused: set[str] = set()

    def _record(self, kind: str, what: str, target: str, invoke: float, note: str = "") -> None:
        self.recorder.add(
            Operation(
                NEMESIS_PROCESS,
                kind,
                invoke,
                self.recorder.clock(),
                "ok",
                value=what,
                note=f"{target} {note}".strip(),
            )
        )

    async def leader(self, timeout: float = 20.0) -> str:
        """The host whose /primary answers 200 (bounded wait)."""
        deadline = self.recorder.clock() + timeout
        while self.recorder.clock() < deadline:
            found = []
            for host, address in self.hosts.raft.items():
                answer = await request(
                    f"http://{address}:{HEALTH_PORT}", "GET", "/primary", timeout=1.0
                )
                if answer.status == 200:
                    found.append(host)
            if len(found) == 1:
                return found[0]
            await asyncio.sleep(0.2)
        raise LabError(f"no single leader within {timeout:.0f} s")

    async def vip_holder(self) -> str:
        for host in self.hosts.lb:
            out = await lab_cli(self.hosts.name, "exec", host, "--", "ip", "-4", "-o", "addr")
            if f" {self.hosts.vip}/" in out:
                return host
        raise LabError(f"no balancer holds the VIP {self.hosts.vip}")

    async def run(self, duration: float) -> None:
        deadline = self.recorder.clock() + duration
        try:
            await asyncio.sleep(self.quiet)
            while self.recorder.clock() + self.hold + self.quiet < deadline:
                kind = self.rng.choice(self.kinds)
                t0 = self.recorder.clock()
                try:
                    await self.one_fault(kind)
                except LabError as e:
                    # Recorded, not fatal: the run goes on, its report counts failed faults.
                    self.recorder.add(
                        Operation(
                            NEMESIS_PROCESS,
                            "fault",
                            t0,
                            self.recorder.clock(),
                            "fail",
                            value=kind,
                            note=str(e)[:5000],
                        )
                    )
                    await self.heal_all()
                await asyncio.sleep(self.quiet)
        finally:
            await self.heal_all()

    async def one_fault(self, kind: str) -> None:
        name = self.hosts.name
        t0 = self.recorder.clock()
        if kind == "transfer-leader":
            host = self.rng.choice(list(self.hosts.raft))
            answer = await request(
                f"http://{self.hosts.raft[host]}:{CLIENT_PORT}",
                "POST",
                "/admin/v1/leader/transfer",
                {},
                timeout=20.0,
            )
            self._record("fault", kind, host, t0, f"status={answer.status}")
            self._record("heal", kind, host, self.recorder.clock())
            return
        if kind == "cut-one-way":
            await self.cut_one_way()
            return
        if kind == "transfer-during-partition":
            await self.transfer_during_partition()
            return
        if kind in {"wal-tail", "wal-lost-tail"}:
            await self.wal_tail(kind)
            return
        if kind in {"kill-leader", "pause-leader", "isolate-leader"}:
            target = await self.leader()
        elif kind == "lb-kill":
            target = await self.vip_holder()
        else:
            target = self.rng.choice(list(self.hosts.raft))
        t0 = self.recorder.clock()
        if kind.startswith("kill-"):
            await kill9(name, target, "raftnode")
        elif kind == "pause-leader":
            self.paused.add(target)
            await lab_cli(name, "pause", target, "raftnode")
        elif kind.startswith("isolate-"):
            await lab_cli(name, "isolate", target)
        elif kind == "lb-kill":
            await kill9(name, target, "haproxy")
        self._record("fault", kind, target, t0)
        await asyncio.sleep(self.hold)
        t0 = self.recorder.clock()
        if kind == "pause-leader":
            await lab_cli(name, "resume", target, "raftnode")
            self.paused.discard(target)
        elif kind.startswith("isolate-"):
            await lab_cli(name, "heal", target)
        elif kind.startswith("kill-"):
            await lab_cli(name, "exec", target, "--", "systemctl", "start", "raftnode")
        elif kind == "lb-kill":
            await lab_cli(name, "exec", target, "--", "systemctl", "start", "haproxy")
        self._record("heal", kind, target, t0)

    async def cut_one_way(self) -> None:
        """Drop the packets one way between the leader and a random follower, then heal."""
        leader = await self.leader()
        follower = self.rng.choice(sorted(h for h in self.hosts.raft if h != leader))
        sender, receiver = (leader, follower) if self.rng.random() < 0.5 else (follower, leader)
        t0 = self.recorder.clock()
        await lab_cli(self.hosts.name, "cut", "--one-way", sender, receiver)
        self._record("fault", "cut-one-way", receiver, t0, f"{sender}->{receiver} dropped")
        await asyncio.sleep(self.hold)
        t0 = self.recorder.clock()
        await lab_cli(self.hosts.name, "heal", receiver)
        self._record("heal", "cut-one-way", receiver, t0, f"{sender}->{receiver} flows")

    async def transfer_during_partition(self) -> None:
        """Isolate a follower, ask the leader to hand over (to either follower), heal."""
        leader = await self.leader()
        followers = sorted(h for h in self.hosts.raft if h != leader)
        isolated = self.rng.choice(followers)
        to = self.rng.choice(followers)
        t0 = self.recorder.clock()
        await lab_cli(self.hosts.name, "isolate", isolated)
        answer = await request(
            f"http://{self.hosts.raft[leader]}:{CLIENT_PORT}",
            "POST",
            "/admin/v1/leader/transfer",
            {"to": node_id(to)},
            timeout=20.0,
        )
        outcome = f"status={answer.status}" if answer.status else f"error={answer.error}"
        note = f"{isolated} isolated; {leader} asked to hand over to {to}: {outcome}"
        self._record("fault", "transfer-during-partition", isolated, t0, note)
        await asyncio.sleep(self.hold)
        t0 = self.recorder.clock()
        await lab_cli(self.hosts.name, "heal", isolated)
        self._record("heal", "transfer-during-partition", isolated, t0)

    async def wal_tail(self, kind: str) -> None:
        """Stop a follower, damage the end of its newest WAL segment, start it again.

        ``wal-tail`` appends a torn frame, ``wal-lost-tail`` cuts into the last complete one
        (``torn_tail``). The heal is recorded with how long the node took to serve as a
        caught-up replica; one that does not within REJOIN_TIMEOUT fails the fault (and so the
        run), with the leader's view of it and its own log lines as evidence.
        """
        name = self.hosts.name
        leader = await self.leader()
        target = self.rng.choice(sorted(h for h in self.hosts.raft if h != leader))
        mode: Mode = "cut" if kind == "wal-lost-tail" else "append"
        t0 = self.recorder.clock()
        await lab_cli(name, "exec", target, "--", "systemctl", "stop", "raftnode")
        argv = script_argv(mode, self.rng.randrange(2**31))
        out = await lab_cli(name, "exec", target, "--", *argv)
        try:
            _damaged, note = describe(out)
        except ValueError as e:
            raise LabError(str(e)) from None
        self._record("fault", kind, target, t0, note)
        await asyncio.sleep(self.hold)
        t0 = self.recorder.clock()
        await lab_cli(name, "exec", target, "--", "systemctl", "start", "raftnode")
        waited = await self.wait_replica(target, REJOIN_TIMEOUT)
        if waited is None:
            raise LabError(
                f"{kind}: {target} not a caught-up replica {REJOIN_TIMEOUT:.0f} s after its "
                f"start ({note}); {await self.evidence(target)}"
            )
        self._record("heal", kind, target, t0, f"caught up in {waited:.1f} s")

    async def evidence(self, host: str) -> str:
        """What the leader knows of host (its member entry) and host's own log lines, health
        checks left out: enough to tell a node that did not start from one left behind."""
        answer = await request(
            f"http://{self.hosts.raft[host]}:{CLIENT_PORT}", "GET", "/admin/v1/members", timeout=5.0
        )
        members = answer.body.decode(errors="replace") if answer.status else answer.error
        journal = await lab_cli(
            self.hosts.name,
            "exec",
            host,
            "--",
            "sh",
            "-c",
            JOURNAL_WITHOUT_HEALTH_CHECKS,
        )
        return f"members ({answer.status}): {members[:1500]}; journal: {journal[-2500:]}"

    async def wait_replica(self, host: str, timeout: float) -> float | None:
        """Seconds until host's /replica answers 200 (a follower with a live leader, caught up),
        or None after timeout."""
        start = self.recorder.clock()
        while self.recorder.clock() - start < timeout:
            answer = await request(
                f"http://{self.hosts.raft[host]}:{HEALTH_PORT}", "GET", "/replica", timeout=1.0
            )
            if answer.status == 200:
                return self.recorder.clock() - start
            await asyncio.sleep(0.5)
        return None

    async def heal_all(self) -> None:
        """Everything back: partitions removed, paused units resumed, units started."""
        name = self.hosts.name
        t0 = self.recorder.clock()
        errors: list[str] = []
        steps: list[tuple[str, ...]] = [("heal",)]
        steps += [("resume", host, "raftnode") for host in sorted(self.paused)]
        steps += [("exec", h, "--", "systemctl", "start", "raftnode") for h in self.hosts.raft]
        steps += [("exec", h, "--", "systemctl", "start", "haproxy") for h in self.hosts.lb]
        for step in steps:
            try:
                await lab_cli(name, *step, timeout=60.0)
            except LabError as e:
                errors.append(str(e))
        self.paused.clear()
        self._record("heal", "heal-all", "all", t0, "; ".join(errors)[:500])
        if errors:
            raise LabError("heal-all: " + "; ".join(errors))
