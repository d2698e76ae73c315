"""Combined schedules: which kinds run together, chosen from a seeded generator."""

from __future__ import annotations

import random

import pytest

from chaos.nemesis import fault_kinds
from chaos.schedule import (
    KILLS,
    PARTITIONS,
    Rotation,
    bridge_plan,
    partner_delay,
    partners,
    pick_round,
)


def test_a_partition_gets_a_kill_and_a_kill_a_partition() -> None:
    enabled = fault_kinds("kill,partition,pause")
    assert set(partners("isolate-leader", enabled)) == set(KILLS)
    assert set(partners("kill-random", enabled)) == set(PARTITIONS - {"bridge"})
    assert partners("pause-leader", enabled) == []
    assert partners("bridge", enabled) == [], "a bridge holds every free node"


def test_a_long_fault_never_gets_a_partner_that_holds_a_leader_follower_pair() -> None:
    """The second 1800 s run: membership beside cut-one-way (leader n3 and follower n2 held)
    found no free follower on three nodes and failed as a fault."""
    enabled = fault_kinds("all,partition,membership,full-disk")
    for long in ("membership", "full-disk", "wal-tail"):
        assert set(partners(long, enabled)) == {
            "kill-random",
            "kill-leader",
            "isolate-leader",
            "isolate-minority",
        }


def test_long_faults_get_a_kill_or_a_partition_from_the_enabled_kinds() -> None:
    enabled = ["full-disk", "kill-leader", "lb-kill"]
    assert partners("full-disk", enabled) == ["kill-leader"]
    assert partners("full-disk", ["full-disk"]) == [], "alone when nothing fits"


def test_membership_always_runs_beside_a_kill_or_a_partition() -> None:
    rng = random.Random(3)
    for _ in range(50):
        first, second = pick_round(rng, ["membership"], combine_share=0.0)
        assert first == "membership" and second in {"kill-random", "isolate-minority"}
    rounds = {pick_round(rng, ["membership", "kill-leader"], 0.0) for _ in range(50)}
    assert ("membership", "kill-leader") in rounds and ("kill-leader",) in rounds


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_the_share_decides_whether_other_rounds_combine(share: float) -> None:
    rng = random.Random(7)
    enabled = ["isolate-minority", "kill-random"]
    sizes = {len(pick_round(rng, enabled, share)) for _ in range(40)}
    assert sizes == ({1} if share == 0.0 else {2})


def test_all_combines_about_the_share_of_its_rounds_and_is_reproducible() -> None:
    enabled = fault_kinds("all")
    rounds = [pick_round(random.Random(11), enabled, 0.3) for _ in range(3)]
    assert rounds[0] == rounds[1] == rounds[2], "same seed, same schedule"
    rng = random.Random(5)
    combined = [r for r in (pick_round(rng, enabled) for _ in range(400)) if len(r) == 2]
    assert 20 < len(combined) < 120
    for first, second in combined:
        assert second in partners(first, enabled) and first != second


def test_no_kind_is_refused_and_delays_are_bounded() -> None:
    with pytest.raises(ValueError, match="no fault kind"):
        pick_round(random.Random(1), [])
    rng = random.Random(2)
    assert all(1.0 <= partner_delay(rng, "membership") <= 3.0 for _ in range(20))
    assert all(0.0 <= partner_delay(rng, "isolate-leader") <= 1.0 for _ in range(20))


def test_the_rotation_tries_every_kind_before_repeating_one() -> None:
    rotation = Rotation(random.Random(4), ["a", "b", "c"])
    first_turn = [str(rotation.next()) for _ in range(3)]
    assert sorted(first_turn) == ["a", "b", "c"]
    assert sorted(str(rotation.next()) for _ in range(3)) == ["a", "b", "c"]


def test_the_rotation_skips_kinds_that_do_not_fit_the_time_left() -> None:
    rotation = Rotation(random.Random(1), ["long", "short"])
    assert [rotation.next(lambda k: k == "short") for _ in range(4)] == ["short"] * 4
    assert rotation.next(lambda k: False) is None, "nothing fits: the schedule stops"
    with pytest.raises(ValueError, match="no fault kind"):
        Rotation(random.Random(1), [])


@pytest.mark.parametrize(("count", "halves"), [(3, (1, 1)), (5, (2, 2)), (4, (1, 2))])
def test_a_bridge_plan_splits_the_others_into_two_halves(
    count: int, halves: tuple[int, int]
) -> None:
    nodes = [f"n{i}" for i in range(1, count + 1)]
    plan = bridge_plan(random.Random(count), nodes)
    assert plan is not None
    middle, left, right = plan
    assert (len(left), len(right)) == halves
    assert sorted([middle, *left, *right]) == nodes
    assert bridge_plan(random.Random(1), nodes[:2]) is None
