"""The list-append checker on hand-made histories: valid ones pass, each anomaly is named."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from chaos.elle import ElleCheckError, check_list_append
from chaos.history import Operation, Outcome, numbered


def txn(p: int, t0: float, t1: float, *mops: list[Any], outcome: Outcome = "ok") -> Operation:
    return Operation(str(p), "txn", t0, t1, outcome, result=[list(m) for m in mops])


def r(key: str, value: list[str] | None) -> list[Any]:
    return ["r", key, value]


def a(key: str, element: str) -> list[Any]:
    return ["append", key, element]


def kinds(*ops: Operation, realtime: bool = True) -> dict[str, int]:
    return check_list_append(numbered(ops), realtime=realtime).by_kind()


def test_a_serial_history_is_valid() -> None:
    ops = numbered(
        [
            txn(1, 0, 1, r("x", []), a("x", "1")),
            txn(2, 2, 3, r("x", ["1"]), a("x", "2"), a("y", "1")),
            txn(1, 4, 5, r("x", ["1", "2"]), r("y", ["1"])),
            txn(3, 6, 7, a("y", "2")),
            txn(2, 8, 9, r("x", ["1", "2"]), r("y", ["1", "2"])),
        ]
    )
    result = check_list_append(ops)
    assert result.valid, result.anomalies
    assert (result.txns, result.committed, result.keys) == (5, 5, 2)


def test_concurrent_transactions_in_some_serial_order_are_valid() -> None:
    # T1 and T2 overlap; T2's read is before T1's append in the order: rw T2 -> T1, no cycle.
    assert (
        kinds(
            txn(1, 0, 3, a("x", "1")),
            txn(2, 1, 2, r("x", [])),
            txn(3, 4, 5, r("x", ["1"])),
        )
        == {}
    )


def test_g0_write_cycle() -> None:
    # x's order says T1 before T2, y's says T2 before T1.
    found = kinds(
        txn(1, 0, 2, a("x", "1"), a("y", "1")),
        txn(2, 0, 2, a("x", "2"), a("y", "2")),
        txn(3, 3, 4, r("x", ["1", "2"]), r("y", ["2", "1"])),
    )
    assert found == {"G0": 1}


def test_g1c_circular_information_flow() -> None:
    # T1 read T2's append to y, T2 read T1's append to x: each saw the other.
    found = kinds(
        txn(1, 0, 2, a("x", "1"), r("y", ["1"])),
        txn(2, 0, 2, a("y", "1"), r("x", ["1"])),
        txn(3, 3, 4, r("x", ["1"]), r("y", ["1"])),
    )
    assert found == {"G1c": 1}


def test_g_single_read_skew() -> None:
    # T2 appends to x and y; T1 saw T2's y but not its x (one anti-dependency closes it).
    found = kinds(
        txn(2, 0, 2, a("x", "1"), a("y", "1")),
        txn(1, 0, 2, r("x", []), r("y", ["1"])),
        txn(3, 3, 4, r("x", ["1"]), r("y", ["1"])),
    )
    assert found == {"G-single": 1}


def test_g2_write_skew() -> None:
    # Each read the other's key empty and appended to its own: two anti-dependencies.
    found = kinds(
        txn(1, 0, 2, r("y", []), a("x", "1")),
        txn(2, 0, 2, r("x", []), a("y", "1")),
        txn(3, 3, 4, r("x", ["1"]), r("y", ["1"])),
    )
    assert found == {"G2": 1}


def test_a_stale_read_is_caught_only_with_real_time_edges() -> None:
    ops = (
        txn(1, 0, 1, a("x", "1")),
        txn(2, 2, 3, r("x", [])),  # invoked after the append was acknowledged
        txn(3, 4, 5, r("x", ["1"])),
    )
    assert kinds(*ops, realtime=False) == {}
    result = check_list_append(numbered(ops), realtime=True)
    assert result.by_kind() == {"G-single-realtime": 1}
    assert sorted(result.anomalies[0].cycle) == [(0, "rt", 1), (1, "rw", 0)]


def test_incompatible_orders() -> None:
    found = kinds(
        txn(1, 0, 1, a("x", "1")),
        txn(2, 0, 1, a("x", "2")),
        txn(3, 0.5, 3, r("x", ["1"])),
        txn(4, 0.5, 3, r("x", ["2"])),
    )
    assert found == {"incompatible-order": 1}


def test_an_element_applied_twice_is_a_duplicate() -> None:
    found = kinds(txn(1, 0, 1, a("x", "1")), txn(2, 2, 3, r("x", ["1", "1"])))
    assert found == {"duplicate-elements": 1}


def test_a_lost_acknowledged_append() -> None:
    result = check_list_append(
        numbered(
            [
                txn(1, 0, 1, a("x", "1")),
                txn(2, 0, 1, a("x", "2")),
                txn(9, 5, 6, r("x", ["2"])),
            ]
        )
    )
    assert result.by_kind() == {"lost-append": 1}
    assert "'1'" in result.anomalies[0].detail


def test_an_append_concurrent_with_the_final_read_is_not_lost() -> None:
    assert kinds(txn(1, 0, 6, a("x", "1")), txn(9, 5, 7, r("x", []))) == {}


def test_an_indeterminate_append_that_lands_late_is_no_anomaly() -> None:
    ops = numbered(
        [
            txn(1, 0, 1, a("x", "1"), outcome="info"),  # gave up at 1; applied later
            txn(2, 2, 3, r("x", [])),
            txn(3, 4, 5, a("x", "2")),
            txn(9, 6, 7, r("x", ["1", "2"])),
            txn(4, 0, 1, a("x", "3"), outcome="info"),  # never applied: not lost either
        ]
    )
    result = check_list_append(ops)
    assert result.valid, result.anomalies
    assert result.recovered == 1


def test_reading_a_failed_append_is_g1a() -> None:
    found = kinds(txn(1, 0, 1, a("x", "1"), outcome="fail"), txn(2, 2, 3, r("x", ["1"])))
    assert found == {"G1a": 1}


def test_reading_an_intermediate_append_is_g1b() -> None:
    found = kinds(txn(1, 0, 1, a("x", "1"), a("x", "2")), txn(2, 0, 3, r("x", ["1"])))
    assert "G1b" in found


def test_an_element_nobody_appended_is_garbage() -> None:
    assert kinds(txn(1, 0, 1, r("x", ["7"]))) == {"garbage-read": 1}


def test_a_read_after_an_own_append_must_see_it() -> None:
    assert kinds(txn(1, 0, 1, a("x", "1"), r("x", []))) == {"internal": 1}
    assert kinds(txn(1, 0, 1, a("x", "1"), r("x", ["1"]))) == {}


def test_malformed_histories_are_refused_with_the_reason() -> None:
    with pytest.raises(ElleCheckError, match="unique"):
        check_list_append(numbered([txn(1, 0, 1, a("x", "1")), txn(2, 0, 1, a("x", "1"))]))
    with pytest.raises(ElleCheckError, match="unknown micro-operation"):
        check_list_append(numbered([txn(1, 0, 1, ["w", "x", "1"])]))
    with pytest.raises(ElleCheckError, match="null"):
        check_list_append(numbered([txn(1, 0, 1, r("x", None))]))


def test_a_long_history_of_serial_appends_checks_quickly() -> None:
    ops: list[Operation] = []
    seen: list[str] = []
    for n in range(2000):
        op = txn(n % 5, 2 * n, 2 * n + 1, r("x", list(seen)), a("x", str(n)))
        ops.append(dataclasses.replace(op, index=n))
        seen.append(str(n))
    started = time.monotonic()
    assert check_list_append(ops).valid
    assert time.monotonic() - started < 30
