"""Schemathesis against a live three-node cluster, from ``docs/openapi.yaml`` (kv, admin and lease).

Every check schemathesis has (``--checks all``): no 5xx other than the documented 503/504,
status codes, headers, content types and bodies as the spec says, schema-violating input
refused, schema-valid input accepted, unknown methods answered 405 with ``Allow``. The run is
bounded by ``RAFTNODE_SCHEMATHESIS_EXAMPLES`` cases per operation and
``RAFTNODE_SCHEMATHESIS_SECONDS`` of wall time; the seed is printed so a failure reproduces
with ``RAFTNODE_SCHEMATHESIS_SEED``. Admin removals and promotions only name ids that cannot be
members (``schemathesis_hooks.py``), so the cluster stays usable for the whole run.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.cluster import running

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs" / "openapi.yaml"
EXAMPLES = int(os.environ.get("RAFTNODE_SCHEMATHESIS_EXAMPLES", "25"))
SECONDS = int(os.environ.get("RAFTNODE_SCHEMATHESIS_SECONDS", "120"))


@pytest.mark.slow
@pytest.mark.timeout(SECONDS + 120)
def test_live_cluster_matches_the_spec(tmp_path: Path) -> None:
    seed = int(os.environ.get("RAFTNODE_SCHEMATHESIS_SEED", random.randrange(1 << 31)))
    with running() as cluster:
        url = cluster.url(cluster.leader(), "")
        command = [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            str(SPEC),
            "--url",
            url,
            "--include-tag",
            "kv",
            "--include-tag",
            "admin",
            "--include-tag",
            "lease",
            "--checks",
            "all",
            "--max-examples",
            str(EXAMPLES),
            "--max-time",
            str(SECONDS),
            "--seed",
            str(seed),
            "--workers",
            "1",
            "--request-timeout",
            "15",
            "--no-color",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
        ]
        env = {
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.fuzz.schemathesis_hooks",
            "PYTHONPATH": str(ROOT),
        }
        done = subprocess.run(
            command,
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=SECONDS + 90,
            check=False,
        )
        print(f"schemathesis seed {seed}, {EXAMPLES} cases per operation, at most {SECONDS}s")
        print(done.stdout[-20000:], done.stderr[-5000:])
        assert done.returncode == 0, f"schemathesis found failures (seed {seed}); see output"
        # The cluster is still usable after the run: a write and a read through the leader.
        leader = cluster.leader()
        assert cluster.put(leader, "after-fuzz", "ok").status == 200
        assert cluster.get(leader, "after-fuzz").json()["value"] == "ok"
