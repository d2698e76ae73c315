"""Config validation: good files load, every bad key is named in the error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from raftnode.config import ConfigError, load_config, parse_config

SECRET = "0123456789abcdef0123456789abcdef"


def good(tmp_path: Path) -> dict:
    (tmp_path / "secret").write_text(SECRET)
    return {
        "node_id": 1,
        "data_dir": str(tmp_path / "d"),
        "listen": {"client": "0.0.0.0:8081", "health": "0.0.0.0:10001", "peer": "0.0.0.0:9081"},
        "cluster": [
            {"id": i, "name": f"n{i}", "peer": f"127.0.0.1:908{i}", "client": f"127.0.0.1:808{i}"}
            for i in (1, 2, 3)
        ],
        "secret_file": str(tmp_path / "secret"),
        "timing": {"tick_ms": 50, "election_ticks": 10, "heartbeat_ticks": 1},
        "limits": {"max_key_bytes": 1024},
        "snapshot": {"every_entries": 100},
        "log": {"level": "info", "format": "json"},
        "auth": {"anonymous_role": "admin"},
    }


def problems(raw: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return info.value.problems


def test_good_config_loads_from_file(tmp_path: Path) -> None:
    path = tmp_path / "n1.yaml"
    path.write_text(yaml.safe_dump(good(tmp_path)))
    cfg = load_config(path)
    assert cfg.node_id == 1
    assert cfg.listen_client.port == 8081
    assert cfg.me.name == "n1"
    assert cfg.secret == SECRET.encode()
    assert cfg.snapshot.every_entries == 100
    assert cfg.log.format == "json"
    assert cfg.timing.request_timeout_ms == 5000  # default


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda c: c.update(node_id=0), "node_id"),
        (lambda c: c.update(node_id="one"), "node_id"),
        (lambda c: c.update(node_id=7), "node_id"),
        (lambda c: c.pop("data_dir"), "data_dir"),
        (lambda c: c["listen"].update(client="nohost"), "listen.client"),
        (lambda c: c["listen"].update(peer="127.0.0.1:99999"), "listen.peer"),
        (lambda c: c["listen"].update(health="0.0.0.0:8081"), "listen"),
        (lambda c: c.update(cluster=[]), "cluster"),
        (lambda c: c["cluster"][1].update(id=1), "cluster"),
        (lambda c: c["cluster"][2].pop("peer"), "cluster[2].peer"),
        (lambda c: c["cluster"][0].update(extra=1), "cluster[0].extra"),
        (lambda c: c.pop("secret_file"), "secret_file"),
        (lambda c: c.update(secret_file="/nonexistent/secret"), "secret_file"),
        (lambda c: c["timing"].update(tick_ms=-5), "timing.tick_ms"),
        (lambda c: c["timing"].update(heartbeat_ticks=10), "timing.heartbeat_ticks"),
        (lambda c: c["limits"].update(max_value_bytes="big"), "limits.max_value_bytes"),
        (lambda c: c["log"].update(level="loud"), "log.level"),
        (lambda c: c["log"].update(format="xml"), "log.format"),
        (lambda c: c.update(snapshot={"every": 5}), "snapshot.every"),
        (lambda c: c.update(bogus=True), "bogus"),
        (lambda c: c.update(insecure="yes"), "insecure"),
    ],
)
def test_each_error_names_its_key(tmp_path: Path, change, key: str) -> None:
    raw = good(tmp_path)
    change(raw)
    found = problems(raw)
    assert any(p.startswith(f"{key}:") for p in found), found


def test_insecure_allows_missing_secret(tmp_path: Path) -> None:
    raw = good(tmp_path)
    raw.pop("secret_file")
    raw["insecure"] = True
    assert parse_config(raw).secret is None


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    raw = good(tmp_path)
    raw["node_id"] = -1
    raw["log"]["level"] = "loud"
    raw["timing"]["tick_ms"] = "fast"
    assert len(problems(raw)) >= 3


def test_not_a_mapping_and_bad_yaml(tmp_path: Path) -> None:
    assert problems(["a"])[0].startswith("(top level)")
    path = tmp_path / "bad.yaml"
    path.write_text("node_id: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    raw = good(tmp_path)
    raw["data_dir"] = "data/n1"
    raw["secret_file"] = "secret"
    path = tmp_path / "n1.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    assert cfg.data_dir == tmp_path.resolve() / "data/n1"


@pytest.mark.parametrize("value", [1, 9, "8", True, None])
def test_peer_min_protocol_must_be_a_version_this_release_speaks(
    tmp_path: Path, value: object
) -> None:
    raw = {**good(tmp_path), "peer_min_protocol": value}
    found = problems(raw)
    assert len(found) == 1 and found[0].startswith("peer_min_protocol"), found


def test_peer_min_protocol_reaches_the_node_options(tmp_path: Path) -> None:
    from raftnode.node_options import options_from_config

    assert options_from_config(parse_config(good(tmp_path))).peer_min_protocol == 2
    raw = {**good(tmp_path), "peer_min_protocol": 8}
    assert options_from_config(parse_config(raw)).peer_min_protocol == 8


def test_cpu_scheduling_is_batch_unless_inherit_is_chosen(tmp_path: Path) -> None:
    assert parse_config(good(tmp_path)).cpu_scheduling == "batch"
    raw = {**good(tmp_path), "cpu_scheduling": "inherit"}
    assert parse_config(raw).cpu_scheduling == "inherit"


@pytest.mark.parametrize("value", ["fifo", "BATCH", "", 3, True])
def test_an_unknown_cpu_scheduling_policy_is_named(tmp_path: Path, value: object) -> None:
    found = problems({**good(tmp_path), "cpu_scheduling": value})
    assert len(found) == 1 and found[0].startswith("cpu_scheduling: must be"), found
