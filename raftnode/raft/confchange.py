"""Membership changes as pure functions: which configuration an operation leads to, or why not.

The core (``RaftCore.propose_conf_change``) and the runtime's automatic promotion both decide
through these functions, so each rule exists once (etcd-io/raft ``confchange``, hashicorp/raft
``nextConfiguration``). Every refusal raises ``ConfChangeError`` with a sentence an operator can
act on, and nothing changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from raftnode.raft.errors import ConfChangeError
from raftnode.raft.types import ConfChangeOp, ConfState


@dataclass(frozen=True, slots=True)
class LearnerProgress:
    """What the leader knows of a learner's replication, for the catch-up rule."""

    match: int
    """Highest log index known to be on the learner (0: nothing confirmed yet)."""
    recently_active: bool
    """The leader heard from the learner within the last election timeout."""


def catch_up_refusal(
    node_id: int, progress: LearnerProgress | None, last_index: int, max_lag: int
) -> str | None:
    """Why learner ``node_id`` may not be promoted yet, or None when it has caught up.

    Caught up means: the leader has heard from it recently, it confirmed at least one entry,
    and it is at most ``max_lag`` entries behind the leader's last index.
    """
    if progress is None or progress.match == 0 or not progress.recently_active:
        return (
            f"learner {node_id} has not caught up: the leader has not heard from it "
            "recently; promote it once it has"
        )
    lag = last_index - progress.match
    if lag > max_lag:
        return (
            f"learner {node_id} is {lag} entries behind; promote it once it has caught up "
            f"(within {max_lag})"
        )
    return None


def next_configuration(
    conf: ConfState,
    op: ConfChangeOp,
    node_id: int,
    *,
    catch_up: str | None = None,
) -> ConfState:
    """The configuration that ``op`` on ``node_id`` leads to from ``conf``.

    ``ADD_LEARNER`` adds a non-member as a learner; ``ADD_VOTER`` promotes a current learner
    (never a stranger: a voter that does not exist would count towards the quorum for good);
    ``REMOVE`` removes a voter or learner but never the last voter. ``catch_up`` is
    ``catch_up_refusal``'s answer for the learner being promoted (ignored for other ops).
    """
    if op is ConfChangeOp.BOOTSTRAP:
        raise ConfChangeError("bootstrap is not a change that can be proposed")
    if node_id <= 0:
        raise ConfChangeError(f"node id must be positive, got {node_id}")
    if op is ConfChangeOp.ADD_VOTER:
        if node_id in conf.voters:
            raise ConfChangeError(f"node {node_id} is already a voter")
        if node_id not in conf.learners:
            raise ConfChangeError(
                f"node {node_id} is not a learner of this cluster: only a learner can be "
                "promoted (add it first with POST /admin/v1/members)"
            )
        if catch_up is not None:
            raise ConfChangeError(catch_up)
        return ConfState(conf.voters | {node_id}, conf.learners - {node_id})
    if op is ConfChangeOp.ADD_LEARNER:
        if node_id in conf.members():
            raise ConfChangeError(f"node {node_id} is already a member")
        return ConfState(conf.voters, conf.learners | {node_id})
    if node_id not in conf.members():
        raise ConfChangeError(f"node {node_id} is not a member")
    if conf.voters == {node_id}:
        raise ConfChangeError("cannot remove the last voter")
    return ConfState(conf.voters - {node_id}, conf.learners - {node_id})


def check_prev_index(prev_index: int | None, config_index: int) -> None:
    """Refuse a change decided on a configuration other than the one in force.

    ``prev_index`` is the ``config_index`` the caller read (``GET /admin/v1/members``); None
    skips the check (hashicorp/raft's ``prevIndex`` 0 does the same).
    """
    if prev_index is not None and prev_index != config_index:
        raise ConfChangeError(
            f"the configuration changed since index {prev_index} (it is now at index "
            f"{config_index}); read the members again and decide anew"
        )


def check_addresses_unused(
    node_id: int, new_addresses: Mapping[str, str], in_use: Mapping[int, Mapping[str, str]]
) -> None:
    """Refuse adding ``node_id`` at an address another member already uses.

    ``new_addresses`` maps a kind (``peer``, ``client``) to ``host:port``; ``in_use`` maps each
    current member to its own addresses of those kinds.
    """
    for member, addresses in sorted(in_use.items()):
        if member == node_id:
            continue
        for kind, address in new_addresses.items():
            if address and addresses.get(kind) == address:
                raise ConfChangeError(
                    f"{kind} address {address} is already used by member {member}"
                )
