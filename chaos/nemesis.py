"""Faults on lab hosts, driven through the lab CLI (``python3 -m lab.raftlab``).

A schedule picks faults from the enabled groups until its deadline: quiet, fault, hold, heal,
quiet. Every fault and every heal is recorded into the history (process ``nemesis``), and
whatever happens the schedule ends with everything healed (``heal_all`` in a finally).

Fault kinds (group in brackets):
- ``kill-random``, ``kill-leader`` [kill]: SIGKILL of raftnode (systemd restarts it);
- ``pause-leader`` [pause]: SIGSTOP of the leader's raftnode for longer than an election timeout;
- ``isolate-leader``, ``isolate-minority`` [partition]: nftables DROP between the host and every
  other lab host (the controller still reaches it: clients keep talking to the cut-off side);
- ``bridge`` [partition]: the nodes other than a random bridge node split into two halves that
  cannot reach each other while both reach the bridge (Jepsen's bridge; on five nodes 2+1+2);
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
- ``keepalived-kill`` [lb]: SIGKILL of every keepalived process on the VIP holder; the fault
  fails unless the other balancer alone holds the VIP within VIP_MOVE_TIMEOUT (the dead
  holder's interface must lose it too); the heal starts it
  again and waits until exactly one balancer holds the VIP;
- ``rolling-restart`` [restart]: every Raft node restarted (systemctl restart) one after
  another, followers first and the leader last (its own SIGTERM hands leadership over), each
  waited for as a caught-up replica before the next;
- ``membership`` [membership]: a follower removed through the admin API, stopped, wiped and
  added back the way the day-2 tooling does (``chaos.membership``), always while another fault
  (a kill or a partition) runs beside it; the heal waits until it is a caught-up voter again;
- ``full-disk`` [disk]: a node's data dir moved onto a small tmpfs that a filler file then fills
  (``chaos.full_disk``); the heal removes the filler, waits until it serves, and moves the
  data back to its own disk;
- ``transfer-leader`` [transfer]: a leadership transfer through the admin API;
- ``transfer-during-partition`` [transfer]: a follower isolated, then a leadership transfer asked
  of the leader, to the isolated follower or to the reachable one (the former must fail cleanly
  and leave the leader serving), the partition healed after the hold.

Combined schedules (``chaos.schedule``): a share of the rounds runs two faults at once, a
partition with a kill, or a long fault (membership, full-disk, wal-tail) with a kill or a
partition on another host; each fault and heal is still recorded on its own.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from .full_disk import RESTORE_DISK, full_disk
from .history import NEMESIS_PROCESS, Operation
from .http_client import Answer, request
from .lab_error import LabError
from .membership import heal_leftover, membership_change, node_id
from .schedule import COMBINE_SHARE, LONG, Rotation, bridge_plan, partner_delay, pick_round
from .torn_tail import Mode, describe, script_argv
from .workload import Recorder

GROUPS: dict[str, tuple[str, ...]] = {
    "kill": ("kill-random", "kill-leader"),
    "pause": ("pause-leader",),
    "partition": ("isolate-leader", "isolate-minority", "cut-one-way", "bridge"),
    "disk": ("wal-tail", "wal-lost-tail", "full-disk"),
    "lb": ("lb-kill", "keepalived-kill"),
    "transfer": ("transfer-leader", "transfer-during-partition"),
    "restart": ("rolling-restart",),
    "membership": ("membership",),
}
OPT_IN = frozenset(
    {"wal-lost-tail", "keepalived-kill", "rolling-restart", "membership", "full-disk", "bridge"}
)
"""Kinds left out of ``all`` (named explicitly or by their group): a fault outside the model
(wal-lost-tail), or one whose real runs have not yet shown it fits ``make chaos``'s budget."""
CLIENT_PORT = 8081
BALANCER_PORT = 8080
"""The VIP's client port (HAProxy's frontend), as the seed gives it."""
HEALTH_PORT = 10001
JOURNAL_WITHOUT_HEALTH_CHECKS = (
    "journalctl -u raftnode --no-pager -n 2000 | grep -v 'msg=\"health check\"' | tail -n 12"
)
REJOIN_TIMEOUT = 60.0
"""How long a restarted node may take to serve as a caught-up replica (/replica)."""
VIP_MOVE_TIMEOUT = 20.0
"""How long the VIP may take to reach the other balancer (keepalived-kill), or to settle on one."""
KILL_KEEPALIVED = "pids=$(pgrep -x keepalived) && kill -9 $pids"
"""Every keepalived process of the guest (parent and VRRP child): a crash, not a clean stop."""
SECONDS_NEEDED = {"rolling-restart": 45.0, "membership": 45.0, "full-disk": 40.0}
"""Time a long kind needs before the run's deadline to be picked (it would overrun it)."""


def fault_kinds(spec: str) -> list[str]:
    """``all`` or a comma list of groups (kill, pause, partition, disk, lb, transfer) or kinds.

    ``all`` leaves out the OPT_IN kinds; a group or a kind named explicitly includes them
    (``all,membership``: every default kind and membership).
    """
    names = [s.strip() for s in spec.split(",") if s.strip()]
    every = {kind for kinds in GROUPS.values() for kind in kinds}
    chosen: list[str] = []
    for name in names:
        if name == "all":
            chosen += [kind for kinds in GROUPS.values() for kind in kinds if kind not in OPT_IN]
        elif name in GROUPS:
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
    return list(dict.fromkeys(chosen))  # each kind once, in the order named


@dataclass(frozen=True)
class LabHosts:
    name: str
    raft: dict[str, str]  # host name -> address
    lb: dict[str, str]
    vip: str

    @property
    def endpoints(self) -> list[str]:
        """The VIP and every node's client port."""
        return [f"http://{self.vip}:{BALANCER_PORT}"] + [
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


def _fits(left: float, kind: str) -> bool:
    return SECONDS_NEEDED.get(kind, 0.0) <= left


class Nemesis:
    def __init__(
        self,
        hosts: LabHosts,
        kinds: Sequence[str],
        recorder: Recorder,
        seed: int = 0,
        hold: float = 8.0,
        quiet: float = 5.0,
        combine_share: float = COMBINE_SHARE,
    ) -> None:
        self.hosts, self.kinds, self.recorder = hosts, list(kinds), recorder
        self.rng = random.Random(seed)
        self.hold, self.quiet = hold, quiet
        self.combine_share = combine_share
        self.rotation = Rotation(self.rng, self.kinds)
        self.paused: set[str] = set()
        self.busy: set[str] = set()
        """Hosts a running fault holds: the other fault of a combined round leaves them alone."""
        self.small_disks: set[str] = set()
        """Hosts whose data dir is on full-disk's tmpfs (heal_all moves it back)."""
        self.removed: set[str] = set()
        """Hosts a membership change took out and has not added back yet (heal_all does)."""

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

    async def exec(self, host: str, *argv: str, timeout: float = 120.0) -> str:
        """A command inside a lab host (``lab.raftlab exec``); LabError when it fails."""
        return await lab_cli(self.hosts.name, "exec", host, "--", *argv, timeout=timeout)

    async def admin(
        self, host: str, method: str, path: str, body: Any = None, timeout: float = 15.0
    ) -> Answer:
        """A request to a Raft host's client port (the admin API lives there)."""
        return await request(
            f"http://{self.hosts.raft[host]}:{CLIENT_PORT}", method, path, body, timeout=timeout
        )

    def pick(self, candidates: Iterable[str]) -> str:
        """A random host among candidates that no running fault holds."""
        free = sorted(set(candidates) - self.busy)
        if not free:
            raise LabError(
                f"no free host among {sorted(set(candidates))} (busy: {sorted(self.busy)})"
            )
        return self.rng.choice(free)

    async def leader(self, timeout: float = 20.0) -> str:
        """The host whose /primary answers 200 (bounded wait). Hosts a running fault holds are
        not asked: an isolated old leader may still say it leads for a moment."""
        deadline = self.recorder.clock() + timeout
        while self.recorder.clock() < deadline:
            found = []
            for host, address in self.hosts.raft.items():
                if host in self.busy:
                    continue
                answer = await request(
                    f"http://{address}:{HEALTH_PORT}", "GET", "/primary", timeout=1.0
                )
                if answer.status == 200:
                    found.append(host)
            if len(found) == 1:
                return found[0]
            await asyncio.sleep(0.2)
        raise LabError(f"no single leader within {timeout:.0f} s")

    async def leader_or_free(self) -> str:
        """The leader; in a combined round where the other fault holds it (so it is not asked),
        a free host instead: the round still runs two faults on two hosts."""
        if not self.busy:
            return await self.leader()
        try:
            return await self.leader(timeout=5.0)
        except LabError:
            return self.pick(self.hosts.raft)

    async def vip_holders(self) -> list[str]:
        held = []
        for host in self.hosts.lb:
            out = await self.exec(host, "ip", "-4", "-o", "addr")
            if f" {self.hosts.vip}/" in out:
                held.append(host)
        return held

    async def vip_holder(self) -> str:
        held = await self.vip_holders()
        if not held:
            raise LabError(f"no balancer holds the VIP {self.hosts.vip}")
        return held[0]

    async def run(self, duration: float) -> None:
        deadline = self.recorder.clock() + duration
        try:
            await asyncio.sleep(self.quiet)
            while self.recorder.clock() + self.hold + self.quiet < deadline:
                first = self.rotation.next(partial(_fits, deadline - self.recorder.clock()))
                if first is None:
                    break  # only long kinds left, and too little time for them
                kinds = pick_round(self.rng, self.kinds, self.combine_share, first)
                if not await self.one_round(kinds):
                    await self.heal_all()
                await asyncio.sleep(self.quiet)
        finally:
            await self.heal_all()

    async def one_round(self, kinds: Sequence[str]) -> bool:
        """One fault, or two at once; False if any failed. A long fault (membership, full-disk,
        wal-tail) starts ``partner_delay`` after its partner, so it runs while the kill or the
        partition is on; of a partition and a kill, the second starts after the delay."""
        if len(kinds) == 1:
            return await self.guarded(kinds[0])
        delay = partner_delay(self.rng, kinds[0])
        first, second = (kinds[1], kinds[0]) if kinds[0] in LONG else (kinds[0], kinds[1])

        async def later(kind: str) -> bool:
            await asyncio.sleep(delay)
            return await self.guarded(kind)

        results = await asyncio.gather(self.guarded(first), later(second))
        return all(results)

    async def guarded(self, kind: str) -> bool:
        """Run one fault; a LabError is recorded as a failed fault (the report counts it)."""
        t0 = self.recorder.clock()
        try:
            await self.one_fault(kind)
            return True
        except LabError as e:
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
            return False

    async def one_fault(self, kind: str) -> None:
        name = self.hosts.name
        t0 = self.recorder.clock()
        if kind == "transfer-leader":
            host = self.pick(self.hosts.raft)
            answer = await self.admin(host, "POST", "/admin/v1/leader/transfer", {}, timeout=20.0)
            self._record("fault", kind, host, t0, f"status={answer.status}")
            self._record("heal", kind, host, self.recorder.clock())
            return
        special = {
            "cut-one-way": self.cut_one_way,
            "transfer-during-partition": self.transfer_during_partition,
            "keepalived-kill": self.keepalived_kill,
            "rolling-restart": self.rolling_restart,
            "membership": lambda: membership_change(self),
            "full-disk": lambda: full_disk(self),
            "bridge": self.bridge,
            "isolate-minority": self.isolate_minority,
        }
        if kind in special:
            await special[kind]()
            return
        if kind in {"wal-tail", "wal-lost-tail"}:
            await self.wal_tail(kind)
            return
        if kind in {"kill-leader", "pause-leader", "isolate-leader"}:
            target = await self.leader_or_free()
        elif kind == "lb-kill":
            target = await self.vip_holder()
        else:
            target = self.pick(self.hosts.raft)
        self.busy.add(target)
        try:
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
                await self.exec(target, "systemctl", "start", "raftnode")
            elif kind == "lb-kill":
                await self.exec(target, "systemctl", "start", "haproxy")
            self._record("heal", kind, target, t0)
        finally:
            self.busy.discard(target)

    async def keepalived_kill(self) -> None:
        """SIGKILL every keepalived process on the VIP holder; the other balancer must take the
        VIP (within VIP_MOVE_TIMEOUT), and after the restart exactly one may hold it."""
        target = await self.vip_holder()
        self.busy.add(target)
        try:
            t0 = self.recorder.clock()
            await self.exec(target, "sh", "-c", KILL_KEEPALIVED)
            # Moved, and off the dead holder's interface too (roles/keepalived's crash drop-in).
            taken = await self.wait_vip(lambda held: bool(held) and target not in held)
            if taken is None:
                held = await self.vip_holders()
                raise LabError(
                    f"keepalived-kill: no other balancer took the VIP {self.hosts.vip} alone "
                    f"within {VIP_MOVE_TIMEOUT:.0f} s of keepalived's death on {target} "
                    f"(held by {held})"
                )
            seconds, held = taken
            note = f"VIP on {','.join(held)} {seconds:.1f} s after the kill"
            self._record("fault", "keepalived-kill", target, t0, note)
            await asyncio.sleep(self.hold)
            t0 = self.recorder.clock()
            await self.exec(target, "systemctl", "start", "keepalived")
            single = await self.wait_vip(lambda held: len(held) == 1)
            if single is None:
                held = await self.vip_holders()
                raise LabError(
                    f"keepalived-kill: {VIP_MOVE_TIMEOUT:.0f} s after keepalived started again "
                    f"on {target} the VIP is held by {held}, not by exactly one balancer"
                )
            note = f"keepalived back; VIP on {single[1][0]} alone"
            self._record("heal", "keepalived-kill", target, t0, note)
        finally:
            self.busy.discard(target)

    async def wait_vip(
        self, done: Callable[[list[str]], bool], timeout: float | None = None
    ) -> tuple[float, list[str]] | None:
        """(seconds, holders) once ``done(holders)``, or None after the timeout."""
        timeout = VIP_MOVE_TIMEOUT if timeout is None else timeout
        start = self.recorder.clock()
        while True:
            held = await self.vip_holders()
            if done(held):
                return self.recorder.clock() - start, held
            if self.recorder.clock() - start >= timeout:
                return None
            await asyncio.sleep(0.3)

    async def rolling_restart(self) -> None:
        """Restart every Raft node in turn, the leader last; each must serve as a caught-up
        replica (REJOIN_TIMEOUT) before the next one goes down."""
        remaining = set(self.hosts.raft)
        self.busy |= remaining
        t0 = self.recorder.clock()
        self._record("fault", "rolling-restart", "all", t0, f"{len(remaining)} nodes")
        t0 = self.recorder.clock()
        notes = []
        try:
            while remaining:
                leader = await self.leader_among(remaining)
                followers = sorted(h for h in remaining if h != leader)
                host = followers[0] if followers else min(remaining)
                await self.exec(host, "systemctl", "restart", "raftnode", timeout=90.0)
                waited = await self.wait_replica(host, REJOIN_TIMEOUT)
                if waited is None:
                    raise LabError(
                        f"rolling-restart: {host} not a caught-up replica {REJOIN_TIMEOUT:.0f} s "
                        f"after its restart; {await self.evidence(host)}"
                    )
                notes.append(f"{host}{' (leader)' if host == leader else ''} {waited:.1f} s")
                remaining.discard(host)
        finally:
            self.busy -= set(self.hosts.raft)
        self._record("heal", "rolling-restart", "all", t0, "caught up: " + ", ".join(notes))

    async def leader_among(self, hosts: set[str], timeout: float = 20.0) -> str | None:
        """The leader, asked with the busy marks of ``hosts`` lifted (a rolling restart holds
        every node but still needs to know which one leads); None if none is found."""
        held = self.busy & hosts
        self.busy -= held
        try:
            return await self.leader(timeout)
        except LabError:
            return None
        finally:
            self.busy |= held

    async def isolate_minority(self) -> None:
        """Isolate a random minority of the Raft nodes (one of three, two of five), each cut
        off from every other lab host; heal them after the hold."""
        size = (len(self.hosts.raft) - 1) // 2
        chosen: list[str] = []
        for _ in range(size):
            chosen.append(self.pick(h for h in self.hosts.raft if h not in chosen))
        self.busy |= set(chosen)
        try:
            t0 = self.recorder.clock()
            for host in chosen:
                await lab_cli(self.hosts.name, "isolate", host)
            note = "" if size == 1 else f"with {','.join(chosen[1:])}"
            self._record("fault", "isolate-minority", chosen[0], t0, note)
            await asyncio.sleep(self.hold)
            t0 = self.recorder.clock()
            for host in chosen:
                await lab_cli(self.hosts.name, "heal", host)
            self._record("heal", "isolate-minority", chosen[0], t0, note)
        finally:
            self.busy -= set(chosen)

    async def bridge(self) -> None:
        """A bridge node sees both halves of the others; the halves do not see each other."""
        plan = bridge_plan(self.rng, sorted(set(self.hosts.raft) - self.busy))
        if plan is None:
            raise LabError(f"bridge: needs three free Raft nodes, busy {sorted(self.busy)}")
        middle, left, right = plan
        held = {middle, *left, *right}
        self.busy |= held
        note = f"bridge {middle} between {','.join(left)} | {','.join(right)}"
        try:
            t0 = self.recorder.clock()
            for a in left:
                for b in right:
                    await lab_cli(self.hosts.name, "cut", a, b)
            self._record("fault", "bridge", middle, t0, note)
            await asyncio.sleep(self.hold)
            t0 = self.recorder.clock()
            for host in left:
                await lab_cli(self.hosts.name, "heal", host)
            self._record("heal", "bridge", middle, t0, note)
        finally:
            self.busy -= held

    async def cut_one_way(self) -> None:
        """Drop the packets one way between the leader and a random follower, then heal."""
        leader = await self.leader()
        follower = self.pick(h for h in self.hosts.raft if h != leader)
        sender, receiver = (leader, follower) if self.rng.random() < 0.5 else (follower, leader)
        self.busy |= {leader, follower}
        try:
            t0 = self.recorder.clock()
            await lab_cli(self.hosts.name, "cut", "--one-way", sender, receiver)
            self._record("fault", "cut-one-way", receiver, t0, f"{sender}->{receiver} dropped")
            await asyncio.sleep(self.hold)
            t0 = self.recorder.clock()
            await lab_cli(self.hosts.name, "heal", receiver)
            self._record("heal", "cut-one-way", receiver, t0, f"{sender}->{receiver} flows")
        finally:
            self.busy -= {leader, follower}

    async def transfer_during_partition(self) -> None:
        """Isolate a follower, ask the leader to hand over (to either follower), heal."""
        leader = await self.leader()
        followers = sorted(h for h in self.hosts.raft if h != leader)
        isolated = self.pick(followers)
        to = self.rng.choice(followers)
        self.busy.add(isolated)
        try:
            await self._transfer_during_partition(leader, isolated, to)
        finally:
            self.busy.discard(isolated)

    async def _transfer_during_partition(self, leader: str, isolated: str, to: str) -> None:
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
        leader = await self.leader()
        target = self.pick(h for h in self.hosts.raft if h != leader)
        self.busy.add(target)
        try:
            await self._wal_tail(kind, target)
        finally:
            self.busy.discard(target)

    async def _wal_tail(self, kind: str, target: str) -> None:
        name = self.hosts.name
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
        # A caught-up replica, or the leader: beside a kill of the leader (a combined round)
        # the restarted node may win the election, which needs its log complete.
        waited = await self.wait_serving(target, REJOIN_TIMEOUT)
        if waited is None:
            raise LabError(
                f"{kind}: {target} neither a caught-up replica nor the leader "
                f"{REJOIN_TIMEOUT:.0f} s after its start ({note}); {await self.evidence(target)}"
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

    async def sleep_hold(self) -> None:
        await asyncio.sleep(self.hold)

    async def wait_serving(self, host: str, timeout: float) -> float | None:
        """Seconds until host serves as a caught-up replica (/replica) or as the leader
        (/primary), or None after timeout."""
        start = self.recorder.clock()
        base = f"http://{self.hosts.raft[host]}:{HEALTH_PORT}"
        while self.recorder.clock() - start < timeout:
            for path in ("/replica", "/primary"):
                answer = await request(base, "GET", path, timeout=1.0)
                if answer.status == 200:
                    return self.recorder.clock() - start
            await asyncio.sleep(0.5)
        return None

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
        """Everything back: partitions removed, paused units resumed, full disks emptied and
        moved back, units started, a node a failed membership change left out added back."""
        name = self.hosts.name
        t0 = self.recorder.clock()
        errors: list[str] = []
        steps: list[tuple[str, ...]] = [("heal",)]
        steps += [("resume", host, "raftnode") for host in sorted(self.paused)]
        steps += [("exec", h, "--", "sh", "-c", RESTORE_DISK) for h in sorted(self.small_disks)]
        steps += [("exec", h, "--", "systemctl", "start", "raftnode") for h in self.hosts.raft]
        for unit in ("haproxy", "keepalived"):
            steps += [("exec", h, "--", "systemctl", "start", unit) for h in self.hosts.lb]
        for step in steps:
            try:
                await lab_cli(name, *step, timeout=60.0)
            except LabError as e:
                errors.append(str(e))
        self.paused.clear()
        self.small_disks.clear()
        for host in sorted(self.removed):
            try:
                await heal_leftover(self, host)
            except LabError as e:
                errors.append(str(e))
        self._record("heal", "heal-all", "all", t0, "; ".join(errors)[:500])
        if errors:
            raise LabError("heal-all: " + "; ".join(errors))
