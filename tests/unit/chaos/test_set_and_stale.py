"""The set checker, the stale-read checks and the history file."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.history import HistoryError, read_history, write_history
from chaos.run import balancer_endpoints
from chaos.set_checker import SetCheckError, check_set
from chaos.stale_reads import check_stale_reads

from .histories import get, op, put


def add(p: int, t: float, element: str, outcome: str = "ok") -> object:
    return op(p, "add", t, t + 1, outcome, key="s", value=element)  # type: ignore[arg-type]


def final(elements: list[str], t: float = 100) -> object:
    return op(0, "read_set", t, t + 1, key="s", result=elements)


def test_set_all_acknowledged_adds_found() -> None:
    ops = [add(1, 0, "a"), add(2, 1, "b"), add(3, 2, "c", "info"), final(["a", "b"])]
    result = check_set(ops)  # type: ignore[arg-type]
    assert result.valid
    assert (result.acknowledged, result.indeterminate, result.recovered) == (2, 1, 0)


def test_set_lost_duplicated_and_unexpected() -> None:
    ops = [
        add(1, 0, "a"),
        add(2, 1, "b"),
        add(3, 2, "c", "fail"),
        add(3, 3, "d", "info"),
        final(["b", "b", "c", "d", "zz"]),
    ]
    result = check_set(ops)  # type: ignore[arg-type]
    assert result.lost == ["a"]
    assert result.duplicated == ["b"]
    assert result.unexpected == ["c", "zz"]
    assert result.recovered == 1
    assert not result.valid


def test_set_retried_element_counts_its_best_outcome() -> None:
    ops = [add(1, 0, "a", "info"), add(1, 2, "a", "ok"), final(["a"])]
    result = check_set(ops)  # type: ignore[arg-type]
    assert result.valid and result.acknowledged == 1 and result.indeterminate == 0


def test_set_without_final_read_is_an_error() -> None:
    with pytest.raises(SetCheckError, match="no successful final read_set"):
        check_set([add(1, 0, "a")])  # type: ignore[list-item]


def test_stale_read_of_a_value_never_written() -> None:
    ops = [put(1, 0, 1, "a"), get(2, 2, 3, "q", consistency="stale")]
    anomalies = check_stale_reads(ops)
    assert [a.kind for a in anomalies] == ["never-written"]


def test_stale_read_going_back_on_one_connection() -> None:
    ops = [
        put(1, 0, 1, "a"),
        put(1, 2, 3, "b"),
        get(2, 4, 5, "b", consistency="stale", endpoint="n1", note="rev=9"),
        get(2, 6, 7, "a", consistency="stale", endpoint="n2", note="rev=8"),  # other node: fine
        get(2, 8, 9, "a", consistency="stale", endpoint="n1", note="rev=8"),
    ]
    anomalies = check_stale_reads(ops)
    assert [(a.kind, a.operation.invoke) for a in anomalies] == [("went-back", 8)]


def test_a_wiped_node_starts_its_stale_read_history_over() -> None:
    old = [
        put(1, 0, 1, "a"),
        put(1, 2, 3, "b"),
        get(2, 4, 5, "b", consistency="stale", endpoint="http://n1:8081", note="rev=9"),
    ]
    wiped = op("nemesis", "heal", 6, 20, value="membership", note="n1 wiped=http://n1:8081 ok")
    replaying = [
        get(2, 10, 11, "a", consistency="stale", endpoint="http://n1:8081", note="rev=8"),
        get(2, 12, 13, "b", consistency="stale", endpoint="http://n1:8081", note="rev=9"),
        get(2, 14, 15, "a", consistency="stale", endpoint="http://n1:8081", note="rev=8"),
    ]
    assert check_stale_reads(old + replaying)[0].kind == "went-back", "without the record"
    anomalies = check_stale_reads([*old, wiped, *replaying])
    assert [(a.kind, a.operation.invoke) for a in anomalies] == [("went-back", 14)], (
        "after the wipe, only its new history counts: going back within it is still caught"
    )


def test_history_round_trip(tmp_path: Path) -> None:
    ops = [
        put(1, 0, 1, "a"),
        get(2, 1, 2, None),
        op(3, "cas", 2, 3, "info", value="b", expected=None),
        op("nemesis", "fault", 3, 4, value="kill n1"),
    ]
    path = tmp_path / "h.jsonl"
    assert write_history(path, ops) == 4
    back = read_history(path)
    assert back == ops
    assert [o.index for o in back] == [0, 1, 2, 3]
    assert back[1].result is None and "result" in path.read_text().splitlines()[1]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not JSON"),
        ('{"process": "1", "kind": "put", "invoke": 0, "outcome": "ok"}', "missing field"),
        ('{"process": "1", "kind": "fly", "invoke": 0, "complete": 1, "outcome": "ok"}', "kind"),
        (
            '{"process": "1", "kind": "put", "key": "k", "invoke": 2, "complete": 1, '
            '"outcome": "ok"}',
            "before its invoke",
        ),
        (
            '{"process": "1", "kind": "get", "key": "k", "invoke": 0, "complete": 1, '
            '"outcome": "ok", "colour": 1}',
            "unknown field",
        ),
    ],
)
def test_history_errors_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"process": "1", "kind": "get", "key": "k", "invoke": 0, "complete": 1, '
        '"outcome": "ok"}\n' + line + "\n"
    )
    with pytest.raises(HistoryError, match=message) as info:
        read_history(path)
    assert ":2:" in str(info.value)


def test_stale_reads_through_the_vip_are_checked_for_values_never_written_only() -> None:
    """The VIP sends each read to a node of its choosing: reads through it may come from a node
    that lags more than the one before (found by a long run, with a rolling restart). Only a
    value nobody wrote is an anomaly there; one node still may not go back."""
    vip, node = "http://10.0.0.100:8080", "http://10.0.0.11:8081"
    ops = [
        put(1, 0, 1, "a"),
        put(1, 2, 3, "b"),
        get(2, 4, 5, "b", consistency="stale", endpoint=vip, note="rev=9"),
        get(2, 6, 7, "a", consistency="stale", endpoint=vip, note="rev=8"),
        get(2, 8, 9, "q", consistency="stale", endpoint=vip, note="rev=10"),
        get(3, 4, 5, "b", consistency="stale", endpoint=node, note="rev=9"),
        get(3, 6, 7, "a", consistency="stale", endpoint=node, note="rev=8"),
    ]
    anomalies = check_stale_reads(ops, balancers=balancer_endpoints(ops))
    assert [(a.kind, a.operation.process, a.operation.invoke) for a in anomalies] == [
        ("went-back", "3", 6),
        ("never-written", "2", 8),
    ]
