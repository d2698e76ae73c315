"""10,000 keys were backed up with playbooks/backup.yml, every Raft host lost its data directory,
and playbooks/restore.yml rebuilt the cluster from the backup: every key is back with its value,
writes resumed within a bounded time, the new cluster has a new id, and an old member's data
started beside it was refused by that id without disturbing it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import lab_probe

# Generous bounds: these tests assert behaviour; the figures are measured and printed.
BACKUP_BOUND_S = 180.0
FIRST_WRITE_BOUND_S = 240.0
KEYS = 10000

LAB = lab_probe.load_lab()


def report() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(lab_probe.ephemeral("backup-restore.json").read_text())
    return data


def expected() -> dict[str, str]:
    run = report()["run"]
    return {f"bulk-{i:05d}": f"{run}-{i}" for i in range(KEYS)}


def test_all_keys_were_written_before_the_backup() -> None:
    write = report()["write"]
    print(f"wrote {write['acked']} keys in {write['seconds']} s ({write['per_second']}/s)")
    assert report()["keys_written"] == KEYS
    assert write["acked"] == KEYS, write


def test_backup_time_and_size() -> None:
    backup = report()["backup"]
    meta = backup["metadata"]
    print(
        f"backup: {meta['size_bytes']} bytes, {meta['keys']} keys, "
        f"{backup['playbook_seconds']} s for playbooks/backup.yml, "
        f"{meta['seconds']} s from snapshot start to verified copy, "
        f"{meta['save_seconds']} s of it raftnode snapshot save"
    )
    assert meta["keys"] >= KEYS, meta
    # Keys and values alone are ~25 bytes each; a snapshot is not more than a few MB here.
    assert KEYS * 20 < meta["size_bytes"] < 100 * 1024 * 1024, meta
    assert 0 < meta["seconds"] <= backup["playbook_seconds"] < BACKUP_BOUND_S, backup
    assert 0 < meta["save_seconds"] <= meta["seconds"], meta


def test_backup_files_agree_with_each_other() -> None:
    backup = report()["backup"]
    file = Path(backup["file"])
    sha = hashlib.sha256(file.read_bytes()).hexdigest()
    recorded, name = Path(f"{file}.sha256").read_text().split()
    assert (recorded, name) == (sha, file.name)
    meta = json.loads(Path(f"{file}.json").read_text())
    assert meta == backup["metadata"]
    assert meta["sha256"] == sha and meta["size_bytes"] == file.stat().st_size
    assert meta["voters"] == [1, 2, 3] and meta["index"] > KEYS, meta
    assert meta["cluster_id"] == report()["old_cluster_id"], meta
    assert meta["taken_from"]["role"] == "leader", meta
    # One follower was stopped during the backup: named, and not needed.
    assert meta["not_serving"] == [backup["follower_down"]], meta
    assert meta["taken_from"]["host"] != backup["follower_down"], meta
    assert file.name.startswith(f"raftnode-{meta['cluster_id'][:12]}-"), file.name


def test_the_cluster_was_down_before_the_restore() -> None:
    assert report()["restore"]["down_before"]["status"] != 200


def test_restore_to_first_acknowledged_write_is_bounded() -> None:
    restore = report()["restore"]
    first = restore["first_write"]
    print(
        f"restore: first acknowledged write {restore['first_write_seconds']} s after the restore "
        f"started ({first['attempts']} attempts, codes {first['codes']}); "
        f"playbooks/restore.yml took {restore['playbook_seconds']} s"
    )
    assert first["ok"], first
    assert 0 < restore["first_write_seconds"] < FIRST_WRITE_BOUND_S, restore
    status, value, _ = lab_probe.read_key(LAB.vip_url, "first-write-after-restore")
    assert (status, value) == (200, first["value"])


def test_every_key_read_back_through_the_vip_after_the_restore() -> None:
    read = report()["read_back"]
    print(f"read back {read['ok']}/{read['count']} keys through the VIP in {read['seconds']} s")
    assert read["count"] == KEYS and read["ok"] == KEYS and read["wrong_count"] == 0, read


def test_every_key_is_on_every_node_and_behind_the_vip() -> None:
    want = expected()
    for name, url in [("vip", LAB.vip_url)] + [
        (n, lab_probe.node_url(a, 8081)) for n, a in LAB.raft.items()
    ]:
        status, items = lab_probe.list_prefix(url, "bulk-")
        assert status == 200, name
        wrong = {k for k, v in want.items() if items.get(k) != v}
        assert not wrong and len(items) == KEYS, f"{name}: {len(wrong)} keys missing or wrong"


def test_writes_resume_through_the_vip() -> None:
    assert report()["after_restore_write"]["status"] == 200
    result = lab_probe.write(LAB.vip_url, "verify-after-restore", "yes", timeout=10)
    assert result["status"] == 200, result
    assert lab_probe.read_key(LAB.vip_url, "verify-after-restore")[:2] == (200, "yes")


def test_the_restored_cluster_has_a_new_id() -> None:
    r = report()
    statuses = {name: lab_probe.status_of(a) for name, a in LAB.raft.items()}
    ids = {s["cluster_id"] if s else None for s in statuses.values()}
    assert len(ids) == 1, ids
    assert ids == set(r["new_cluster_ids"]), (ids, r["new_cluster_ids"])
    assert r["old_cluster_id"] not in ids


def test_an_old_member_was_refused_by_cluster_id() -> None:
    r = report()
    old, new = r["old_cluster_id"], set(r["new_cluster_ids"]).pop()
    stale = r["old_member"]
    print(f"old member {stale['host']} refused: {json.dumps(stale['refusals'], indent=1)}")
    assert stale["status"]["cluster_id"] == old, stale["status"]
    assert stale["readiness"] != 200, stale
    for host, lines in stale["refusals"].items():
        # The new members name the old id they refused, the old member the new id.
        other = new if host == stale["host"] else old
        assert lines and all(f"belongs to cluster {other}" in line for line in lines), host
        assert all("this node to cluster" in line for line in lines), host
    # The new cluster kept taking writes meanwhile.
    assert stale["write_beside"]["status"] == 200, stale
    assert lab_probe.read_key(LAB.vip_url, "beside-old-member")[:2] == (200, "written")


def test_the_cluster_is_whole_again() -> None:
    assert report()["converged_after"]["ok"]
    converged = lab_probe.converged(list(LAB.raft.values()), timeout=30)
    assert converged["ok"], converged
    for address in LAB.raft.values():
        url = f"{lab_probe.node_url(address, 10001)}/readiness"
        assert lab_probe.request(url)[0] == 200, address
    leader = lab_probe.leader(list(LAB.raft.values()))
    name = next(n for n, a in LAB.raft.items() if a == leader)
    for lb in LAB.lb:
        assert lab_probe.write_servers(LAB.stats_url(lb)) == [name], lb
