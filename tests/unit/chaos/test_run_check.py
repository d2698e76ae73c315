"""`python -m chaos.run --check HISTORY`: the verdict and the files of a recorded run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chaos.history import Operation, write_history
from chaos.run import lab_host_list, main, node_ids_inventory

from .histories import get, op, put


def _write(tmp_path: Path, extra: list[Operation]) -> Path:
    ops = [
        put(1, 0, 1, "a"),
        get(2, 2, 3, "a"),
        op(3, "add", 3, 4, key="s/", value="e1"),
        op("final", "read_set", 5, 6, key="s/", result=["e1"]),
        *extra,
    ]
    path = tmp_path / "history.jsonl"
    write_history(path, ops)
    return path


def test_clean_history_passes(tmp_path: Path) -> None:
    assert main(["--check", str(_write(tmp_path, []))]) == 0
    assert "RESULT: PASS" in (tmp_path / "summary.txt").read_text()


def test_read_back_in_time_fails(tmp_path: Path) -> None:
    path = _write(tmp_path, [put(1, 7, 8, "b"), get(2, 9, 10, "a")])
    assert main(["--check", str(path)]) == 1
    assert "anomalies 1" in (tmp_path / "summary.txt").read_text()


def test_lost_acknowledged_add_fails(tmp_path: Path) -> None:
    path = _write(tmp_path, [op(3, "add", 3, 4, key="s/", value="e2")])
    assert main(["--check", str(path)]) == 1
    assert "lost 1" in (tmp_path / "summary.txt").read_text()


def _txn(p: str, t0: float, t1: float, *mops: list[object]) -> Operation:
    return Operation(p, "txn", t0, t1, "ok", result=[list(m) for m in mops])


def test_an_append_only_history_is_checked_by_elle(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    write_history(
        path,
        [
            _txn("a0", 0, 1, ["r", "x", []], ["append", "x", "a0-1"]),
            _txn("final", 2, 3, ["r", "x", ["a0-1"]]),
        ],
    )
    assert main(["--check", str(path)]) == 0
    text = (tmp_path / "summary.txt").read_text()
    assert "list-append (Elle, strict serializability): 2 txns" in text
    assert "set " not in text and text.endswith("RESULT: PASS\n")


def test_a_stale_transactional_read_fails_the_run(tmp_path: Path) -> None:
    extra = [
        _txn("a0", 0, 1, ["append", "x", "a0-1"]),
        _txn("a1", 2, 3, ["r", "x", []]),
        _txn("final", 4, 5, ["r", "x", ["a0-1"]]),
    ]
    assert main(["--check", str(_write(tmp_path, extra))]) == 1
    text = (tmp_path / "summary.txt").read_text()
    assert "anomalies 1 (must be 0): G-single-realtime 1" in text
    assert "RESULT: FAIL" in text


def test_an_unknown_workload_is_refused_before_anything_runs() -> None:
    assert main(["--workload", "register,bank", "--nemesis", "none"]) == 2


def test_five_nodes_boot_n1_to_n5_each_with_its_node_id() -> None:
    assert lab_host_list(3) == "n1,n2,n3,lb1,lb2"
    assert lab_host_list(5) == "n1,n2,n3,n4,n5,lb1,lb2"
    with pytest.raises(ValueError, match="--nodes"):
        lab_host_list(4)
    ids = yaml.safe_load(node_ids_inventory(5))["all"]["children"]["raft"]["hosts"]
    assert ids == {f"n{i}": {"raftnode_node_id": i} for i in range(1, 6)}


def test_a_node_count_other_than_three_or_five_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--nodes", "4", "--nemesis", "none"])
    assert "--nodes" in capsys.readouterr().err
