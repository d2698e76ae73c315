"""The leader's raftnode was SIGKILLed while a client wrote through the VIP every few ms:
a new leader took over within a bounded window, no acknowledged write was lost, and systemd
restarted the old node, which came back as a follower."""

from __future__ import annotations

import json
import re
from pathlib import Path

import fault_rounds
import lab_probe

# Raft needs 0.5-1 s to elect, HAProxy up to 0.25 s to see it; the bound is generous on purpose.
WINDOW_BOUND_MS = 5000.0

LAB = lab_probe.load_lab()


def report() -> dict:
    return json.loads(lab_probe.ephemeral("failover.json").read_text())


def loop() -> dict:
    return json.loads(Path(report()["loop_file"]).read_text())


def unit(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_a_new_leader_took_over_and_only_one_leads() -> None:
    r = report()
    assert r["new_leader"] is not None, r
    assert r["new_leader"] != r["old_leader"], r
    # The later rounds moved leadership on: one node leads now.
    codes = lab_probe.primary_codes(list(LAB.raft.values()))
    assert sorted(codes.values()) == [200, 503, 503], codes


def test_write_unavailability_window_is_bounded() -> None:
    summary = report()["loop"]
    print(
        f"write-unavailability window: {summary['window_ms']} ms "
        f"(from {summary['window_from_s']} s to {summary['window_to_s']} s into the loop; "
        f"failures from {summary['first_failure_s']} s to {summary['last_failure_s']} s; "
        f"{summary['acked_count']}/{summary['total']} acked; codes {summary['codes']})"
    )
    # The loop ran its full duration (the crash came ~2 s in) and writes kept succeeding.
    assert summary["duration_s"] >= 10, summary
    assert summary["window_to_s"] is not None, summary
    assert summary["window_ms"] < WINDOW_BOUND_MS, summary


def test_every_acknowledged_write_reads_back_through_the_vip() -> None:
    acked = loop()["acked"]
    assert acked
    wrong = {}
    for key, value in acked.items():
        status, got, _ = lab_probe.read_key(LAB.vip_url, key)
        if status != 200 or got != value:
            wrong[key] = (value, status, got)
    assert not wrong, f"{len(wrong)} of {len(acked)} acknowledged writes lost: {wrong}"


def test_every_acknowledged_write_is_on_every_node() -> None:
    acked = loop()["acked"]
    for name, address in LAB.raft.items():
        status, items = lab_probe.list_prefix(f"http://{address}:8081", "loop-")
        assert status == 200, name
        missing = {k: v for k, v in acked.items() if items.get(k) != v}
        assert not missing, f"{name}: {len(missing)} acknowledged writes missing or wrong"


def test_write_before_the_crash_survived() -> None:
    status, value, _ = lab_probe.read_key(LAB.vip_url, "before-failover")
    assert (status, value) == (200, "kept")


def test_systemd_restarted_the_killed_process() -> None:
    r = report()
    before, after = unit(r["unit_before"]), unit(r["unit_after"])
    assert int(before["MainPID"]) == r["killed_pid"] > 0, r
    assert int(after["MainPID"]) not in (0, r["killed_pid"]), r
    assert int(after["NRestarts"]) >= int(before["NRestarts"]) + 1, r


def test_old_leader_is_back_and_serves() -> None:
    # It came back as a follower (the side effect waited for that); the later rounds may have
    # made it the leader again since.
    old = LAB.raft[report()["old_leader"]]
    status = lab_probe.status_of(old)
    assert status is not None and status["role"] in ("follower", "leader"), status
    assert lab_probe.request(f"http://{old}:10001/readiness")[0] == 200


def test_haproxy_routes_writes_to_the_current_leader() -> None:
    leader = lab_probe.leader(list(LAB.raft.values()))
    name = next(n for n, a in LAB.raft.items() if a == leader)
    for lb in LAB.lb:
        assert lab_probe.write_servers(LAB.stats_url(lb)) == [name], lb


def test_ten_leader_crashes_each_have_a_short_window() -> None:
    # Target median 300 ms, max 600 ms; bounds generous for noisy CI machines.
    fault_rounds.check_rounds_report("leader-kill", median_bound_ms=1500, max_bound_ms=5000)


def test_the_upgrade_in_place_failed_and_lost_no_write() -> None:
    # converge.yml: the previous release, then site.yml + rolling-restart.yml under the loop.
    r = json.loads(lab_probe.ephemeral("upgrade.json").read_text())
    print(
        f"upgrade in place: {r['writes']} writes, {r['failed']} failed {r['codes']}, "
        f"{len(r['lost'])} lost, longest stall {r['longest_stall_ms']} ms, {r['seconds']} s"
    )
    assert r["command_rc"] == 0, r["command_tail"]
    assert r["acknowledged"] > 0, r
    assert r["failed"] == 0, r["codes"]
    assert r["lost"] == [], r["lost"]
    assert r["longest_stall_ms"] < 2000, r  # target 300 ms, as for a rolling restart


def test_every_node_runs_this_release_after_the_upgrade() -> None:
    # Only this release logs the negotiated version with "peer connected".
    lines = json.loads(lab_probe.ephemeral("upgrade-protocol.json").read_text())
    assert sorted(lines) == sorted(LAB.raft), lines
    for name, logged in lines.items():
        assert any("peer connected" in line and "version=" in line for line in logged), name
    everything = [line for logged in lines.values() for line in logged]
    # Two new nodes spoke a negotiated version (3 or later; 4 is the newest today).
    assert any(re.search(r"version=[3-9]\b", line) for line in everything), lines
    # While old and new nodes ran side by side, a new one spoke version 2 to an old one.
    assert any("version 2 hello" in line for line in everything), lines
