"""The register checker on hand-made histories that are and are not linearizable."""

from __future__ import annotations

import random
import time

from chaos.history import Operation, Outcome
from chaos.linearizability import check, check_key, search

from .histories import cas, get, op, put


def verdict(ops: list[Operation]) -> bool | None:
    return check_key("k", ops).linearizable


def test_sequential_history_is_linearizable() -> None:
    assert verdict([put(1, 0, 1, "a"), get(2, 2, 3, "a"), put(1, 4, 5, "b"), get(2, 6, 7, "b")])


def test_read_of_absent_key_before_any_write() -> None:
    assert verdict([get(1, 0, 1, None), put(1, 2, 3, "a"), get(1, 4, 5, "a")])


def test_read_of_a_value_never_written_is_caught() -> None:
    assert verdict([put(1, 0, 1, "a"), get(2, 2, 3, "z")]) is False


def test_concurrent_reads_may_see_old_or_new_value() -> None:
    # The write overlaps both reads: either order is fine, even old after new? No: see below.
    ops = [put(1, 0, 10, "b"), get(2, 1, 2, None), get(3, 3, 4, "b")]
    assert verdict(ops)


def test_read_going_back_in_time_is_caught() -> None:
    # Once a read returned b (write completed or not), a later read cannot return a again.
    ops = [put(1, 0, 1, "a"), put(1, 2, 20, "b"), get(2, 3, 4, "b"), get(3, 5, 6, "a")]
    assert verdict(ops) is False


def test_stale_read_after_acknowledged_write_is_caught() -> None:
    # A follower cut off by a partition serves the old value after the new one was acknowledged.
    ops = [put(1, 0, 1, "a"), put(1, 2, 3, "b"), get(2, 4, 5, "a")]
    assert verdict(ops) is False


def test_stale_reads_are_ignored_unless_declared_linearizable() -> None:
    ops = [
        put(1, 0, 1, "a"),
        put(1, 2, 3, "b"),
        get(2, 4, 5, "a", consistency="stale"),
    ]
    assert check(ops).valid is True
    assert check(ops, read_consistencies=frozenset({"stale"})).valid is False


def test_indeterminate_write_that_lands_late() -> None:
    # The write timed out at t=1; it takes effect after a later acknowledged write b... no:
    # reads see b, then x: x landed after b although its client gave up long before.
    ops = [
        put(1, 0, 1, "x", outcome="info"),
        put(2, 2, 3, "b"),
        get(3, 4, 5, "b"),
        get(3, 6, 7, "x"),
    ]
    assert verdict(ops)


def test_indeterminate_write_may_never_happen() -> None:
    ops = [put(1, 0, 1, "x", outcome="info"), get(2, 5, 6, None), get(2, 7, 8, None)]
    assert verdict(ops)


def test_indeterminate_write_cannot_take_effect_twice() -> None:
    # x seen, then overwritten by b (acknowledged after the read of x), then x again: x would
    # have to apply twice.
    ops = [
        put(1, 0, 1, "x", outcome="info"),
        get(2, 2, 3, "x"),
        put(2, 4, 5, "b"),
        get(2, 6, 7, "x"),
    ]
    assert verdict(ops) is False


def test_indeterminate_write_cannot_take_effect_before_its_invoke() -> None:
    ops = [get(2, 0, 1, "x"), put(1, 2, 3, "x", outcome="info")]
    assert verdict(ops) is False


def test_failed_write_never_takes_effect() -> None:
    ops = [put(1, 0, 1, "x", outcome="fail"), get(2, 2, 3, "x")]
    assert verdict(ops) is False


def test_cas_chain_is_linearizable() -> None:
    ops = [
        cas(1, 0, 1, None, "v1"),
        cas(2, 0.5, 2, "v1", "v2"),
        cas(3, 1.5, 3, "v2", "v3"),
        get(4, 4, 5, "v3"),
    ]
    assert verdict(ops)


def test_cas_chain_with_indeterminate_link() -> None:
    # c2 timed out, but c3 succeeded expecting v2: c2 must have applied, before c3.
    ops = [
        cas(1, 0, 1, None, "v1"),
        cas(2, 2, 3, "v1", "v2", outcome="info"),
        cas(3, 4, 5, "v2", "v3"),
        get(4, 6, 7, "v3"),
    ]
    assert verdict(ops)


def test_two_cas_from_the_same_value_cannot_both_win() -> None:
    ops = [
        put(1, 0, 1, "v0"),
        cas(2, 2, 4, "v0", "a"),
        cas(3, 2, 4, "v0", "b"),
        get(4, 5, 6, "b"),
    ]
    assert verdict(ops) is False


def test_cas_that_wins_against_an_overwritten_value_is_caught() -> None:
    ops = [put(1, 0, 1, "v0"), put(1, 2, 3, "v1"), cas(2, 4, 5, "v0", "v2")]
    assert verdict(ops) is False


def test_delete_then_absent_read() -> None:
    ops = [put(1, 0, 1, "a"), op(1, "delete", 2, 3), get(2, 4, 5, None)]
    assert verdict(ops)
    assert verdict([*ops, get(2, 6, 7, "a")]) is False


def test_keys_are_checked_independently() -> None:
    ops = [put(1, 0, 1, "a", key="x"), get(2, 2, 3, "a", key="x"), get(2, 2, 3, "a", key="y")]
    result = check(ops)
    assert [k.key for k in result.anomalies] == ["y"]


def test_witness_is_a_small_failing_sub_history() -> None:
    ops: list[Operation] = []
    t = 0.0
    for n in range(40):
        ops += [put(1, t, t + 1, f"v{n}"), get(2, t + 2, t + 3, f"v{n}")]
        t += 4
    ops.append(get(3, t, t + 1, "v3"))  # reads back in time at the end
    for n in range(10):
        ops += [put(1, t + 2 + 4 * n, t + 3 + 4 * n, f"w{n}")]
    result = check_key("k", ops)
    assert result.linearizable is False
    assert 2 <= len(result.witness) <= 4
    assert check_key("k", list(result.witness)).linearizable is False
    assert any(o.result == "v3" and o.process == "3" for o in result.witness)


def test_budget_exhaustion_is_unknown_not_a_verdict() -> None:
    ops = [put(p, 0, 100, f"v{p}") for p in range(12)] + [get(99, 101, 102, "v0")]
    assert search(ops, budget=5)[0] is None


def _random_linearizable_history(rng: random.Random, n: int, clients: int) -> list[Operation]:
    """Operations applied atomically at random points inside random intervals."""
    state: str | None = None
    ops: list[Operation] = []
    points = sorted(rng.uniform(0, 100) for _ in range(n))
    for i, point in enumerate(points):
        start = point - rng.uniform(0, 3)
        end = point + rng.uniform(0, 3)
        p = i % clients
        choice = rng.random()
        if choice < 0.35:
            value = f"v{i}"
            outcome: Outcome = "info" if rng.random() < 0.2 else "ok"
            ops.append(put(p, start, end, value, outcome=outcome))
            state = value
        elif choice < 0.55:
            value = f"c{i}"
            ops.append(cas(p, start, end, state, value))
            state = value
        else:
            ops.append(get(p, start, end, state))
    return ops


def test_random_linearizable_histories_pass_within_bounded_time() -> None:
    rng = random.Random(7)
    started = time.monotonic()
    for _ in range(20):
        ops = _random_linearizable_history(rng, 200, 8)
        assert verdict(ops) is True
    assert time.monotonic() - started < 30


def test_random_histories_with_a_corrupted_read_fail() -> None:
    rng = random.Random(11)
    for _ in range(10):
        ops = _random_linearizable_history(rng, 150, 6)
        last_write = max(
            (o for o in ops if o.kind in {"put", "cas"} and o.outcome == "ok"),
            key=lambda o: o.complete,
        )
        # A read long after every write that returns a value never written.
        ops.append(get(50, last_write.complete + 10, last_write.complete + 11, "bogus"))
        assert verdict(ops) is False


def test_witness_drops_unrelated_deletes() -> None:
    ops: list[Operation] = []
    for n in range(30):
        ops += [op(1, "delete", 4 * n, 4 * n + 1), put(2, 4 * n + 2, 4 * n + 3, f"v{n}")]
    ops.append(get(3, 200, 201, "never"))
    result = check_key("k", ops)
    assert result.linearizable is False
    assert [o.result for o in result.witness] == ["never"]


def test_witness_keeps_the_writer_of_every_value_it_reads() -> None:
    # r1 is read through a cas chain: dropping put a (with its observers) must also drop the
    # cas a->b's readers, or a lone "get b" would be a witness that proves nothing.
    ops = [
        put(1, 0, 1, "a"),
        cas(2, 2, 3, "a", "b"),
        get(3, 4, 5, "b"),
        put(1, 6, 7, "c"),
        get(3, 8, 9, "a"),  # the real anomaly: a is back after b and c
    ]
    result = check_key("k", ops)
    assert result.linearizable is False
    for read in (o for o in result.witness if o.kind == "get"):
        assert any(w.value == read.result for w in result.witness if w.kind in {"put", "cas"})
