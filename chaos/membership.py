"""``membership``: a follower removed and added back the way the day-2 tooling does it.

The steps are those of ``roles/raftnode/tasks/remove.yml`` and ``join.yml`` (the operators'
guide, "Retiring nodes" and "Growing the cluster"), through the admin API of a staying member
(a follower forwards to the leader), each retried while another fault runs beside it and each
bounded:

1. read the members; ``DELETE /admin/v1/members/ID?prev_index=N`` with the configuration index
   just read, until the member list no longer has the node (409: a change in flight or the
   configuration moved on, 503: no leader, 504 or no answer: maybe applied; read again);
2. on the node: raftnode stopped, its data dir wiped, started once with
   ``initial_cluster_state: existing`` (a node that lost its disk must not rejoin as itself:
   it waits to be added and takes a snapshot), the original config put back at once (it is only
   read at start, and only matters to an empty data dir);
3. ``POST /admin/v1/members`` with its id, peer and client address (409 "already a member": a
   timed-out attempt applied);
4. the leader promotes a caught-up learner by itself; past half the bound the change is asked
   for (``POST /admin/v1/members/ID/promote``), as the guide allows. Done once it is a voter and
   serves as a caught-up replica.

The balancers are not drained (``remove.yml`` does that): their health checks take a learner
out by themselves, and the clients that talk to the node directly see its refusals.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .http_client import Answer
from .lab_error import LabError

if TYPE_CHECKING:
    from .nemesis import Nemesis

PEER_PORT = 9081
CLIENT_PORT = 8081
STEP_TIMEOUT = 60.0
"""Bound on each step: the removal, the add, the promotion, the catch-up."""
CONFIG = "/etc/raftnode/raftnode.yaml"
DATA_DIR = "/var/lib/raftnode"
WIPE_AND_START_EXISTING = f"""set -e
systemctl stop raftnode
find {DATA_DIR} -mindepth 1 -delete
cp -p {CONFIG} {CONFIG}.chaos-orig
trap 'mv -f {CONFIG}.chaos-orig {CONFIG}' EXIT
sed -i 's/^initial_cluster_state: .*/initial_cluster_state: "existing"/' {CONFIG}
grep -q '^initial_cluster_state: "existing"$' {CONFIG}
systemctl reset-failed raftnode || true
systemctl start raftnode
"""
"""Stop, wipe, start as ``existing``; the original config is back whatever happens."""


def node_id(host: str) -> int:
    """The raftnode id of a lab host: n1 is 1 (inventories/lab/hosts.yml)."""
    if not (host.startswith("n") and host[1:].isdigit()):
        raise LabError(f"lab host {host!r} is not a raft node (n1, n2, ...)")
    return int(host[1:])


def member_roles(answer: Answer) -> dict[int, str] | None:
    """id -> role from a ``GET /admin/v1/members`` answer; None unless it is a 200 with a list."""
    body = answer.json()
    if answer.status != 200 or not isinstance(body, dict):
        return None
    members = body.get("members")
    if not isinstance(members, list):
        return None
    return {int(m["id"]): str(m.get("role", "")) for m in members if isinstance(m, dict)}


def add_body(n: Nemesis, host: str) -> dict[str, Any]:
    address = n.hosts.raft[host]
    return {
        "id": node_id(host),
        "peer": f"{address}:{PEER_PORT}",
        "client": f"{address}:{CLIENT_PORT}",
    }


async def ask_any(
    n: Nemesis, staying: list[str], method: str, path: str, body: Any = None
) -> tuple[str, Answer]:
    """The first HTTP answer from the staying members, tried in a random order."""
    order = list(staying)
    n.rng.shuffle(order)
    last: tuple[str, Answer] = (order[0], Answer(0, False, error="not asked"))
    for host in order:
        answer = await n.admin(host, method, path, body, timeout=10.0)
        last = (host, answer)
        if answer.status:
            return last
    return last


async def members(n: Nemesis, staying: list[str]) -> tuple[dict[int, str] | None, int | None]:
    """(id -> role, config_index) as a staying member sees them; (None, None) if none answers."""
    _, answer = await ask_any(n, staying, "GET", "/admin/v1/members")
    roles = member_roles(answer)
    body = answer.json()
    index = body.get("config_index") if roles is not None and isinstance(body, dict) else None
    return roles, index if isinstance(index, int) else None


async def remove(n: Nemesis, host: str, staying: list[str]) -> str:
    """DELETE the member until the list no longer has it; returns what the attempts answered."""
    member = node_id(host)
    start = n.recorder.clock()
    said: list[str] = []
    while n.recorder.clock() - start < STEP_TIMEOUT:
        roles, index = await members(n, staying)
        if roles is not None and member not in roles:
            return ",".join(said) or "gone"
        if roles is not None and index is not None:
            path = f"/admin/v1/members/{member}?prev_index={index}"
            _, answer = await ask_any(n, staying, "DELETE", path)
            said.append(str(answer.status or answer.error.replace(" ", "_")))
            if answer.status == 200:
                continue  # confirmed by the next read of the list
        await asyncio.sleep(1.0)
    raise LabError(
        f"membership: node {member} still a member {STEP_TIMEOUT:.0f} s after its removal was "
        f"asked (answers: {said[-10:]})"
    )


async def add(n: Nemesis, host: str, staying: list[str]) -> str:
    """POST the member until the list has it; returns what the attempts answered."""
    member = node_id(host)
    start = n.recorder.clock()
    said: list[str] = []
    while n.recorder.clock() - start < STEP_TIMEOUT:
        _, answer = await ask_any(n, staying, "POST", "/admin/v1/members", add_body(n, host))
        said.append(str(answer.status or answer.error.replace(" ", "_")))
        if answer.status in (200, 409, 504) or answer.status == 0:
            roles, _ = await members(n, staying)
            if roles is not None and member in roles:
                return ",".join(said)
        await asyncio.sleep(1.0)
    raise LabError(
        f"membership: node {member} not a member {STEP_TIMEOUT:.0f} s after its add was asked "
        f"(answers: {said[-10:]})"
    )


async def wait_voter(n: Nemesis, host: str, staying: list[str]) -> str:
    """Wait until the member is a voter; past half the bound, ask for the promotion too."""
    member = node_id(host)
    start = n.recorder.clock()
    asked = ""
    while n.recorder.clock() - start < STEP_TIMEOUT:
        roles, _ = await members(n, staying)
        if roles is not None and roles.get(member) == "voter":
            return f"voter in {n.recorder.clock() - start:.1f} s" + asked
        if not asked and n.recorder.clock() - start > STEP_TIMEOUT / 2:
            _, answer = await ask_any(n, staying, "POST", f"/admin/v1/members/{member}/promote")
            asked = f" (promotion asked: {answer.status or answer.error})"
        await asyncio.sleep(1.0)
    raise LabError(
        f"membership: node {member} not a voter {STEP_TIMEOUT:.0f} s after it was added{asked}; "
        f"{await n.evidence(host)}"
    )


async def rejoin(n: Nemesis, host: str) -> None:
    """Wipe, start as ``existing``, add, wait until a caught-up voter; records the heal, its
    note naming the wiped endpoint (``wiped=URL``: the stale-read check starts that endpoint's
    history over there, as the node's own does)."""
    t0 = n.recorder.clock()
    staying = sorted(h for h in n.hosts.raft if h != host)
    await n.exec(host, "sh", "-c", WIPE_AND_START_EXISTING, timeout=90.0)
    added = await add(n, host, staying)
    voter = await wait_voter(n, host, staying)
    waited = await n.wait_replica(host, STEP_TIMEOUT)
    if waited is None:
        raise LabError(
            f"membership: node {node_id(host)} a voter but not a caught-up replica "
            f"{STEP_TIMEOUT:.0f} s later; {await n.evidence(host)}"
        )
    n.removed.discard(host)
    endpoint = f"http://{n.hosts.raft[host]}:{CLIENT_PORT}"
    note = f"wiped={endpoint} added (answers {added}), {voter}, serving after {waited:.1f} s more"
    n._record("heal", "membership", host, t0, note)


async def heal_leftover(n: Nemesis, host: str) -> None:
    """For heal-all after a failed change: add the node back only if the members confirm it is
    out (wiping a node that is still a voter would make it rejoin as itself without its vote)."""
    staying = sorted(h for h in n.hosts.raft if h != host)
    roles, _ = await members(n, staying)
    if roles is None:
        raise LabError(f"membership: no staying member answered; {host} may still be out")
    if node_id(host) in roles:
        n.removed.discard(host)
        return
    await rejoin(n, host)


async def membership_change(n: Nemesis) -> None:
    """Remove a follower and add it back (see the module docstring); the fault is the removal,
    the heal the rejoin, both recorded."""
    leader = await n.leader_or_free()
    target = n.pick(h for h in n.hosts.raft if h != leader)
    staying = sorted(h for h in n.hosts.raft if h != target)
    n.busy.add(target)
    try:
        t0 = n.recorder.clock()
        n.removed.add(target)
        said = await remove(n, target, staying)
        n._record("fault", "membership", target, t0, f"removed (DELETE answers {said})")
        await rejoin(n, target)
    finally:
        n.busy.discard(target)
