"""After rotate.yml (side_effect): playbooks/rotate-certs.yml replaced the CA, every key and
certificate and the token file while a client wrote through the VIP, without a failed or a
lost write; every node and balancer now trusts the new CA only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lab_probe
import pytest

ROTATED_WRITER = "molecule-rotated-write-token-not-for-production"


def report() -> dict[str, Any]:
    return json.loads(lab_probe.ephemeral("rotate.json").read_text())


def pki_dir() -> Path:
    return lab_probe.ephemeral("pki")


def failures_in_one_line(failures: list[dict[str, Any]]) -> str:
    """Each attempt without a 200 (status, error, when), on one line: a CI log keeps the
    assertion's first line only."""
    return f"{len(failures)} failed: " + "; ".join(
        f"{f['key']} status {f['status']} {f['error'] or '(answered)'} after "
        f"{f['answered_after_ms']} ms, sent at {f['sent_at']}"
        for f in failures
    )


def test_the_rotation_lost_and_failed_no_write() -> None:
    r = report()
    print(
        f"rotation: {r['writes']} writes, {r['acknowledged']} acknowledged, {r['failed']} failed "
        f"{r['codes']}, {len(r['lost'])} lost, longest stall {r['longest_stall_ms']} ms, "
        f"{r['seconds']} s"
    )
    assert r["command_rc"] == 0, r["command_tail"]
    assert r["acknowledged"] > 0, r
    assert r["failed"] == 0, failures_in_one_line(r["failures"])
    assert r["lost"] == [], r["lost"]


def test_the_new_ca_is_current_and_alone_in_the_bundle() -> None:
    current = (pki_dir() / "current-ca").read_text().strip()
    assert current.startswith("ca-"), current
    bundle = (pki_dir() / "ca-bundle.crt").read_text()
    assert bundle.count("BEGIN CERTIFICATE") == 1
    assert bundle.strip() == (pki_dir() / f"{current}.crt").read_text().strip()


def test_every_host_trusts_the_new_ca_only(host: Any) -> None:
    groups = host.ansible.get_variables().get("group_names", [])
    bundle = (pki_dir() / "ca-bundle.crt").read_text().strip()
    if "raft" in groups:
        assert host.file("/etc/raftnode/tls/ca.crt").content_string.strip() == bundle
        issuer = host.run("openssl x509 -noout -issuer -in /etc/raftnode/tls/node.crt").stdout
        current = (pki_dir() / "current-ca").read_text().strip()
        assert f"({current})" in issuer, issuer
    elif "lb" in groups:
        ca = host.run("cat /etc/haproxy/tls/backend-ca.pem").stdout.strip()
        assert ca == bundle
    else:
        pytest.skip("neither raft nor lb")


def test_the_rotated_token_writes_through_the_vip(lab) -> None:
    headers = {"Authorization": f"Bearer {ROTATED_WRITER}"}
    body = {"key": "rotated-token-write", "value": "ok"}
    status, _, _ = lab_probe.request(
        f"{lab.vip_url}/kv", method="POST", body=body, headers=headers, timeout=10
    )
    assert status == 200
