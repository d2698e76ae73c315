"""A rolling upgrade from the previous release, one node at a time, on real processes.

The previous release's source is taken from git (``PREVIOUS_RELEASE``) and run beside this
one: the cluster serves writes and reads with every mix of versions, new nodes speak the older
peer protocol to the old node (version 2, after its listener closes a negotiating hello), and
two new nodes negotiate version 4. While any member runs the previous release, requests it could
not apply (a transaction, a compare on ``mod_revision``) are refused with 503
``upgrade_in_progress`` and never reach the log; once every member runs this release they work,
and the stores start counting per-key versions.
"""

from __future__ import annotations

import signal
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from io import BytesIO
from pathlib import Path

import pytest
import yaml

from raftnode.defaults import Limits
from raftnode.transport.auth import MAX_VERSION
from tests.integration.cluster import Cluster, http

REPO = Path(__file__).resolve().parents[2]
PREVIOUS_RELEASE = next(
    line.strip()
    for line in (REPO / "PREVIOUS_RELEASE").read_text().splitlines()
    if line.strip() and not line.startswith("#")
)
"""The commit of the previous release (the repository's ``PREVIOUS_RELEASE`` file)."""


@pytest.fixture(scope="module")
def previous_release() -> Iterator[Path]:
    """The previous release's ``raftnode`` package, unpacked from git into a temporary dir."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", PREVIOUS_RELEASE, "raftnode"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert archive.returncode == 0, (
        f"git archive {PREVIOUS_RELEASE} failed (a clone with history is needed): "
        f"{archive.stderr.decode(errors='replace')}"
    )
    with tempfile.TemporaryDirectory(prefix="raftnode-previous-") as tmp:
        with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp)


PREVIOUS_LIMITS = {"max_key_bytes", "max_value_bytes", "max_request_bytes", "max_store_bytes"}
"""The ``limits:`` the previous release knows: it refuses a config that names any other."""


def configure_for(c: Cluster, node: int, *, previous: bool) -> None:
    """Rewrite ``node``'s config for the release it is about to run (as the role does when it
    installs a release: the config and the package change together)."""
    path = c.node(node).config
    config = yaml.safe_load(path.read_text())
    if previous:
        for section in ("auth", "tls"):  # the previous release knows neither
            config.pop(section, None)
    else:
        config.setdefault("auth", {"anonymous_role": "admin"})
    limits = config.setdefault("limits", {})
    for key in asdict(Limits()):
        if previous and key not in PREVIOUS_LIMITS:
            limits.pop(key, None)
        elif not previous:
            limits.setdefault(key, getattr(Limits(), key))
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def write_and_check(c: Cluster, nodes: list[int], tag: str, count: int = 20) -> None:
    for i in range(count):
        node = nodes[i % len(nodes)]
        assert c.put_retrying([node, *nodes], f"{tag}-{i}", str(i)).status == 200
    for node in nodes:
        for i in (0, count - 1):
            r = c.get(node, f"{tag}-{i}")
            assert r.status == 200 and r.json()["value"] == str(i), (node, tag, r)


TXN = {
    "compare": [{"key": "gate", "target": "exists", "op": "equal", "value": False}],
    "success": [{"op": "put", "key": "gate", "value": "open"}],
}


def check_gate_closed(c: Cluster, node: int) -> None:
    """A new-release node in a mixed cluster refuses what an old member could not apply."""
    r = http("POST", c.url(node, "/txn"), TXN)
    assert r.status == 503 and r.json()["error"] == "upgrade_in_progress", r
    assert "finish the rolling upgrade" in r.json()["message"] and "Retry-After" in r.headers
    r = http("PUT", c.url(node, "/kv/gate"), {"value": "x", "prev_revision": 0})
    assert r.status == 503 and r.json()["error"] == "upgrade_in_progress", r
    got = c.get(node, "all-old-0").json()
    assert got["value"] == "0" and got["version"] is None  # not counted until every node can


def test_rolling_upgrade_from_the_previous_release(previous_release: Path) -> None:
    c = Cluster()
    try:
        for node in (1, 2, 3):  # the whole cluster on the previous release
            configure_for(c, node, previous=True)
            c.start(node, source_dir=previous_release)
        c.leader()
        write_and_check(c, [1, 2, 3], "all-old")
        for upgraded in (1, 2, 3):  # one node at a time, as rolling-restart.yml does
            c.signal(upgraded, signal.SIGTERM)
            assert c.wait_exit(upgraded, timeout=30) == 0
            configure_for(c, upgraded, previous=False)
            c.start(upgraded)
            c.wait_for(
                f"node {upgraded} ready on this release",
                lambda n=upgraded: c.health(n, "/readiness").status == 200,
                timeout=30,
            )
            write_and_check(c, [1, 2, 3], f"after-{upgraded}")
            if upgraded < 3:
                check_gate_closed(c, upgraded)
        r = c.wait_for(
            "a transaction accepted once every member runs this release",
            lambda: (r := http("POST", c.url(1, "/txn"), TXN)).status == 200 and r,
            timeout=20,
        )
        assert r.json()["succeeded"], r
        for node in (1, 2, 3):
            c.wait_for(f"versions counted on node {node}", lambda n=node: _versioned(c, n))
        new_logs = [c.log(n) for n in (1, 2, 3)]
        assert any("dialing again with the version 2 hello" in log for log in new_logs)
        c.signal(2, signal.SIGTERM)  # reconnect among new nodes only: they negotiate 3
        assert c.wait_exit(2, timeout=30) == 0
        c.start(2)
        c.wait_for("node 2 ready", lambda: c.health(2, "/readiness").status == 200, timeout=30)
        c.wait_for(
            f"a stream negotiated at version {MAX_VERSION}",
            lambda: f"version={MAX_VERSION}" in c.log(2),
            timeout=15,
        )
        write_and_check(c, [1, 2, 3], "all-new")
        assert all("Traceback" not in c.log(n) for n in (1, 2, 3))
        assert all("undecodable command skipped" not in c.log(n) for n in (1, 2, 3))
    finally:
        c.close()


def _versioned(c: Cluster, node: int) -> bool:
    r = c.get(node, "all-old-0", "stale")
    return r.status == 200 and r.json()["version"] == 1
