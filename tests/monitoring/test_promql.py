"""The metric-name extraction the live check relies on, and the shape of the shipped files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.monitoring.promql import (
    DASHBOARD,
    RULES,
    dashboard_expressions,
    exported_names,
    metric_names,
    rule_expressions,
    used_metrics,
)


def test_metric_names_skip_functions_labels_ranges_and_grouping() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (job, instance, le) (rate(raftnode_fsync_seconds_bucket"
        '{job="raftnode",le=~"0.5|1"}[5m]))) > 0.5 and on (instance) raftnode_is_leader == 1'
    )
    assert metric_names(expr) == {"raftnode_fsync_seconds_bucket", "raftnode_is_leader"}
    assert metric_names('up{job="x"} == 0 or absent(up{job="x"})') == {"up"}
    assert metric_names('time() - process_start_time_seconds{instance=~"$instance"}') == {
        "process_start_time_seconds"
    }
    assert metric_names("rate(x_total[$__rate_interval]) offset 5m / ignoring(a) y") == {
        "x_total",
        "y",
    }
    assert metric_names('label_values(raftnode_build_info{job=~"$job"}, instance)') == {
        "raftnode_build_info"
    }


def test_exported_names_expand_families_without_samples() -> None:
    text = "\n".join(
        [
            "# TYPE raftnode_write_seconds histogram",
            "# TYPE raftnode_elections counter",
            "raftnode_elections_total 0.0",
            "# TYPE raftnode_term gauge",
            'raftnode_term{a="b"} 3.0',
        ]
    )
    names = exported_names(text)
    assert {"raftnode_write_seconds_bucket", "raftnode_write_seconds_count"} <= names
    assert {"raftnode_elections_total", "raftnode_term"} <= names


def test_every_rule_has_severity_summary_description() -> None:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
            assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_dashboard_queries_use_the_datasource_variable() -> None:
    doc = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in doc["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))


def test_the_files_use_what_the_issue_asks_for() -> None:
    used = used_metrics()
    for name in (
        "raftnode_has_leader",
        "raftnode_write_seconds_bucket",
        "raftnode_read_seconds_bucket",
        "raftnode_fsync_seconds_bucket",
        "raftnode_store_bytes",
        "raftnode_store_quota_bytes",
        "raftnode_quota_alarm",
        "raftnode_replication_lag_entries",
        "raftnode_peer_round_trip_seconds_bucket",
        "haproxy_server_status",
        "haproxy_backend_active_servers",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ):
        assert name in used, name
    assert len(list(rule_expressions())) >= 10
    assert len(list(dashboard_expressions())) >= 30


def test_dashboard_promql_parses(tmp_path: Path) -> None:
    """Every dashboard query, as a recording rule (Grafana variables filled), passes
    ``promtool check rules``; ``make test-monitoring`` installs promtool."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (make test-monitoring installs it)")
    rules = []
    for i, (_, expr) in enumerate(dashboard_expressions()):
        if expr.startswith("label_values("):
            continue
        expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
        rules.append({"record": f"dashboard:query_{i}", "expr": re.sub(r"\$\w+", ".+", expr)})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
