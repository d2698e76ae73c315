"""Backup and disaster recovery on real processes: `raftnode snapshot save` from a running
cluster, `inspect`, then `restore` into the data directories of a new cluster that serves the
same data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.integration.cluster import Cluster, http


def raftnode(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftnode.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_save_inspect_restore_round_trip(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    leader = c.leader()
    for i in range(300):
        assert c.put(leader, f"backup-{i:03d}", f"v{i}").status == 200
    follower = next(i for i in (1, 2, 3) if i != leader)
    file = tmp_path / "cluster.snapshot"

    saved = raftnode("snapshot", "save", str(file), "--endpoint", c.node(follower).client_url)
    assert saved.returncode == 0, saved.stderr
    assert "saved" in saved.stdout and file.stat().st_size > 0

    inspected = raftnode("snapshot", "inspect", str(file), "--json")
    assert inspected.returncode == 0, inspected.stderr
    info = json.loads(inspected.stdout)
    assert info["voters"] == [1, 2, 3] and info["keys"] >= 300 and info["index"] > 300

    damaged = tmp_path / "damaged.snapshot"
    damaged.write_bytes(file.read_bytes()[:4096])
    refused = raftnode("snapshot", "inspect", str(damaged))
    assert refused.returncode == 1 and "damaged.snapshot" in refused.stderr

    new = Cluster()
    # The same secret as the old cluster, as after a real restore: only the cluster id can
    # tell the old members from the new ones.
    (new.base / "secret").write_bytes((c.base / "secret").read_bytes())
    try:
        peers = ",".join(f"{n.ports.node_id}=127.0.0.1:{n.ports.peer}" for n in new.nodes)
        for n in new.nodes:
            data_dir = new.base / f"n{n.ports.node_id}"
            restored = raftnode(
                "snapshot", "restore", str(file), "--data-dir", str(data_dir),
                "--node-id", str(n.ports.node_id), "--peers", peers,
            )  # fmt: skip
            assert restored.returncode == 0, restored.stderr
        again = raftnode(
            "snapshot", "restore", str(file), "--data-dir", str(new.base / "n1"),
            "--node-id", "1", "--peers", peers,
        )  # fmt: skip
        assert again.returncode == 1 and "not empty" in again.stderr
        new.start()
        new_leader = new.leader()
        for node in (1, 2, 3):
            listing = http("GET", new.url(node, "/kv?prefix=backup-&limit=1000")).json()
            assert listing["count"] == 300, (node, listing["count"])
        assert new.put(new_leader, "after-restore", "yes").status == 200

        old_id = c.status(leader)["cluster_id"]
        new_ids = {new.status(n)["cluster_id"] for n in (1, 2, 3)}
        assert len(new_ids) == 1 and old_id not in new_ids

        # An old member's data directory started in the new cluster's place is refused.
        stale = 3 if new_leader != 3 else 2
        c.kill(stale)
        new.kill(stale)
        stale_dir = new.base / f"n{stale}"
        shutil.rmtree(stale_dir)
        shutil.copytree(c.base / f"n{stale}", stale_dir)
        new.start(stale)
        survivors = [n for n in (1, 2, 3) if n != stale]
        new.wait_for(
            "the old member refused by cluster id",
            lambda: any(
                "belongs to cluster" in new.log(n) and old_id in new.log(n) for n in survivors
            ),
            timeout=20,
        )
        assert new.put(new.leader(among=survivors), "still-writable", "yes").status == 200
    finally:
        new.close()
