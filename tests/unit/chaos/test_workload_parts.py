"""How the workload classifies answers and how NEMESIS names faults."""

from __future__ import annotations

import pytest

from chaos.http_client import Answer
from chaos.nemesis import fault_kinds
from chaos.workload import WorkloadConfig, classify_read, classify_write


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (Answer(200, True), "ok"),
        (Answer(409, True, body=b'{"error": "cas_mismatch"}'), "fail"),
        (Answer(503, True, body=b'{"error": "unavailable", "message": "no leader"}'), "fail"),
        (Answer(503, True, body=b"<html>No server is available</html>"), "info"),
        (Answer(504, True, body=b'{"error": "outcome_unknown"}'), "info"),
        (Answer(502, True), "info"),
        (Answer(0, False, error="connect: ConnectionRefusedError"), "fail"),
        (Answer(0, True, error="timeout"), "info"),
        (Answer(0, True, error="lost: ConnectionResetError"), "info"),
        (Answer(400, True), "fail"),
    ],
)
def test_write_classification(answer: Answer, outcome: str) -> None:
    assert classify_write(answer) == outcome


def test_read_classification() -> None:
    assert classify_read(Answer(404, True)) == "ok"
    assert classify_read(Answer(0, True, error="timeout")) == "info"
    assert classify_read(Answer(503, True)) == "fail"


def test_nemesis_names() -> None:
    assert "lb-kill" in fault_kinds("all") and "transfer-leader" in fault_kinds("all")
    assert fault_kinds("kill,pause-leader") == ["kill-random", "kill-leader", "pause-leader"]
    with pytest.raises(ValueError, match="unknown fault 'flood'"):
        fault_kinds("kill,flood")


def test_workload_config_is_checked() -> None:
    with pytest.raises(ValueError, match="no endpoints"):
        WorkloadConfig(endpoints=(), run_id="x")
    with pytest.raises(ValueError, match="clients"):
        WorkloadConfig(endpoints=("http://127.0.0.1:1",), run_id="x", clients=0)
