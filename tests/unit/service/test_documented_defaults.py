"""docs/configuration.md shows the defaults ``raftnode.defaults`` defines, and nothing else."""

from __future__ import annotations

import re
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from raftnode.config import Address, NodeConfig
from raftnode.defaults import History, Limits, LogSettings, Snapshot, Timing, Watch
from raftnode.devcluster import default_ports, write_configs
from raftnode.raft.config import RaftConfig

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def documented_example() -> dict[str, Any]:
    block = re.search(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    assert block is not None, f"{DOC} lost its example configuration"
    example = yaml.safe_load(block[1])
    assert isinstance(example, dict)
    return example


def test_documented_sections_equal_the_code_defaults() -> None:
    example = documented_example()
    assert example["timing"] == asdict(Timing())
    assert example["limits"] == asdict(Limits())
    assert example["snapshot"] == asdict(Snapshot())
    assert example["history"] == asdict(History())
    assert example["watch"] == asdict(Watch())
    assert example["log"] == {k: str(v) for k, v in asdict(LogSettings()).items()}


def test_consensus_core_and_dev_cluster_use_the_same_timing(tmp_path: Path) -> None:
    core = RaftConfig(node_id=1)
    assert core.election_ticks == Timing().election_ticks
    assert core.heartbeat_ticks == Timing().heartbeat_ticks
    assert core.tick_seconds == Timing().tick_seconds
    (node, *_) = write_configs(tmp_path, default_ports(3))
    written = yaml.safe_load(node.config.read_text())
    assert written["timing"] == asdict(Timing())
    assert written["snapshot"] == asdict(Snapshot())


def test_address_parses_host_port_and_bracketed_ipv6() -> None:
    assert Address.parse("10.0.0.1:9081") == Address("10.0.0.1", 9081)
    assert Address.parse("[::1]:8081") == Address("::1", 8081)


@pytest.mark.parametrize(
    ("text", "why"), [("nohost", "host:port"), (":80", "host:port"), ("h:0", "1-65535")]
)
def test_address_refuses_what_is_not_host_port(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Address.parse(text)


def test_role_defaults_that_repeat_a_runtime_default_agree_with_it() -> None:
    """roles/raftnode restates some defaults; whatever it still restates must not drift."""
    role = yaml.safe_load((DOC.parents[1] / "roles/raftnode/defaults/main.yml").read_text())
    code: dict[str, object] = {
        **{f"raftnode_{k}": v for k, v in asdict(Timing()).items()},
        **{f"raftnode_{k}": v for k, v in asdict(Limits()).items()},
        "raftnode_snapshot_every_entries": Snapshot().every_entries,
        "raftnode_log_level": str(LogSettings().level),
        "raftnode_log_format": str(LogSettings().format),
        **{
            f"raftnode_{f.name}": f.default
            for f in fields(NodeConfig)
            if f.name in ("initial_cluster_state", "initial_cluster_token")
        },
    }
    restated = [key for key in code if key in role]
    assert len(restated) >= 10, restated  # the role's flat variables: this test must see them
    for key in restated:
        assert role[key] == code[key], key
    assert {"raftnode_initial_cluster_state", "raftnode_initial_cluster_token"} <= set(restated)
    example = documented_example()
    for key in ("initial_cluster_state", "initial_cluster_token"):
        assert example[key] == role[f"raftnode_{key}"], key
