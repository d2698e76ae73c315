"""Which faults a nemesis round runs: one kind, or two at once (a combined schedule).

Pure choices from a seeded ``random.Random``, so a run's schedule is reproducible and the
rules are tested without a lab:

- a long fault (membership, full-disk, wal-tail) may get a short one beside it: a kill or a
  partition on another host that holds at most a minority and never a leader-follower pair
  (``HOLD_A_MINORITY``: beside ``cut-one-way`` on three nodes, or a bridge, no follower would
  be free for a membership change); ``membership`` always gets one (a membership change
  during another fault is what it is for), from the enabled ones or, when none is enabled,
  from ``kill-random`` and ``isolate-minority``;
- a partition may get a kill beside it, and a kill a partition (never a bridge, which holds
  every free node);
- everything else runs alone, and so does any round when combining is off.

Of a long fault and its partner, the partner starts first and the long fault
``partner_delay`` later, so the change happens while the kill or partition is on; of a
partition and a kill, the first drawn starts first. The one that starts later never picks a
host the other holds.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

KILLS = frozenset({"kill-random", "kill-leader"})
PARTITIONS = frozenset({"isolate-leader", "isolate-minority", "cut-one-way", "bridge"})
LONG = frozenset({"membership", "full-disk", "wal-tail"})
HOLD_A_MINORITY = KILLS | {"isolate-leader", "isolate-minority"}
"""Faults that leave a majority of the nodes and a follower free: partners for long faults."""
MEMBERSHIP_PARTNERS_BY_DEFAULT = ("kill-random", "isolate-minority")
COMBINE_SHARE = 0.3
"""The share of rounds that run two faults at once (membership rounds always do)."""


def partners(kind: str, enabled: Sequence[str]) -> list[str]:
    """The kinds that may run beside ``kind``, from the enabled ones."""
    if kind in LONG:
        found = [k for k in enabled if k in HOLD_A_MINORITY]
        if not found and kind == "membership":
            return list(MEMBERSHIP_PARTNERS_BY_DEFAULT)
        return found
    if kind in PARTITIONS - {"bridge"}:
        return [k for k in enabled if k in KILLS]
    if kind in KILLS:
        return [k for k in enabled if k in PARTITIONS - {"bridge"}]
    return []


class Rotation:
    """Each enabled kind once, in a shuffled order, before any comes again: a short run with
    a few kinds still tries every one of them."""

    def __init__(self, rng: random.Random, enabled: Sequence[str]) -> None:
        if not enabled:
            raise ValueError("no fault kind enabled")
        self.rng, self.enabled = rng, list(dict.fromkeys(enabled))
        self.pending: list[str] = []

    def next(self, fits: Callable[[str], bool] = lambda _: True) -> str | None:
        """The next kind that fits (the time left); if none of this turn does, any that fits;
        None when no kind fits at all (the schedule stops: a long fault would overrun)."""
        if not self.pending:
            self.pending = self.rng.sample(self.enabled, len(self.enabled))
        for kind in self.pending:
            if fits(kind):
                self.pending.remove(kind)
                return kind
        fitting = [k for k in self.enabled if fits(k)]
        return self.rng.choice(fitting) if fitting else None


def pick_round(
    rng: random.Random,
    enabled: Sequence[str],
    combine_share: float = COMBINE_SHARE,
    first: str | None = None,
) -> tuple[str, ...]:
    """The kinds of one round: one, or two that run at once (see the module docstring);
    ``first`` given, the round starts with it, else with a random enabled kind."""
    if not enabled:
        raise ValueError("no fault kind enabled")
    if first is None:
        first = rng.choice(list(enabled))
    others = partners(first, enabled)
    combine = first == "membership" or rng.random() < combine_share
    if not others or not combine:
        return (first,)
    return (first, rng.choice(others))


def partner_delay(rng: random.Random, first: str) -> float:
    """Seconds between the two starts of a combined round: a long fault begins once its
    partner's kill or partition has taken hold (well within its hold), a partition and a kill
    overlap at once."""
    return rng.uniform(1.0, 3.0) if first in LONG else rng.uniform(0.0, 1.0)


def bridge_plan(
    rng: random.Random, nodes: Sequence[str]
) -> tuple[str, list[str], list[str]] | None:
    """(bridge node, one half, the other half) of the nodes, halves as equal as they can be;
    None with fewer than three nodes."""
    if len(nodes) < 3:
        return None
    order = rng.sample(list(nodes), len(nodes))
    middle, rest = order[0], order[1:]
    half = len(rest) // 2
    return middle, sorted(rest[:half]), sorted(rest[half:])
