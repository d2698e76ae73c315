"""``make chaos FAILPOINTS=...``: every node restarted with the failpoints, one at a time, each
waited for until its /status names them; a node that does not is an error, not a silent run."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

import chaos.broken_node as broken_node
from chaos.http_client import Answer
from chaos.nemesis import LabError, LabHosts

HOSTS = LabHosts("lab", {"n1": "10.9.0.21", "n2": "10.9.0.22"}, {"lb1": "10.9.0.31"}, "10.9.0.10")
BROKEN = frozenset({"reads-skip-read-index"})


def test_the_drop_in_sets_the_variable_and_restarts(tmp_path: Path) -> None:
    script = broken_node.drop_in_script(BROKEN)
    assert script.endswith("systemctl daemon-reload && systemctl restart raftnode")
    # The file the shell writes, run for real with the paths moved into a scratch directory.
    moved = script.replace("/etc/systemd/system", str(tmp_path)).split(" && systemctl")[0]
    subprocess.run(["sh", "-c", moved], check=True, timeout=10)
    written = (tmp_path / "raftnode.service.d" / "90-failpoints.conf").read_text()
    assert written == "[Service]\nEnvironment=RAFTNODE_FAILPOINTS=reads-skip-read-index\n"


def _fake_lab(monkeypatch: pytest.MonkeyPatch, statuses: dict[str, list[object]]) -> list[str]:
    order: list[str] = []

    async def lab_cli(name: str, *args: str, timeout: float = 120.0) -> str:
        order.append(args[1])
        return ""

    async def request(base: str, method: str, path: str, timeout: float = 6.0) -> Answer:
        host = next(h for h, a in HOSTS.raft.items() if a in base)
        body = statuses[host].pop(0) if len(statuses[host]) > 1 else statuses[host][0]
        order.append(f"{host} {path}")
        return Answer(200, True, body=json.dumps(body).encode())

    monkeypatch.setattr(broken_node, "lab_cli", lab_cli)
    monkeypatch.setattr(broken_node, "request", request)
    return order


def test_nodes_are_broken_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    named = {"failpoints": sorted(BROKEN)}
    order = _fake_lab(monkeypatch, {"n1": [{}, named], "n2": [named]})
    asyncio.run(broken_node.break_nodes(HOSTS, BROKEN))
    assert order == ["n1", "n1 /status", "n1 /status", "n2", "n2 /status"]


def test_a_node_that_never_names_them_stops_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_lab(monkeypatch, {"n1": [{}], "n2": [{}]})
    monkeypatch.setattr(broken_node, "RESTART_TIMEOUT", 0.05)
    with pytest.raises(LabError, match=r"n1 did not come back with failpoints"):
        asyncio.run(broken_node.break_nodes(HOSTS, BROKEN))
