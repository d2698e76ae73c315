"""The TLS rows' certificates and the loopback-only rule for HTTPS targets."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest
from cryptography import x509

from bench.peers.tls import make_bench_tls, trust_in_process
from bench.preload import preload
from bench.wrkrun import run_wrk


def sans(path: Path) -> x509.SubjectAlternativeName:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_each_node_and_member_gets_a_loopback_certificate_naming_it(tmp_path: Path) -> None:
    tls = make_bench_tls(tmp_path, [1, 2], ["e1"])
    assert tls.ca_file.is_file()
    node2 = sans(tls.cert("raftnode-2"))
    assert node2.get_values_for_type(x509.UniformResourceIdentifier) == ["raftnode://*/node/2"]
    assert ipaddress.ip_address("127.0.0.1") in node2.get_values_for_type(x509.IPAddress)
    member = sans(tls.cert("etcd-e1"))
    assert ipaddress.ip_address("127.0.0.1") in member.get_values_for_type(x509.IPAddress)
    assert tls.key("raftnode-1").stat().st_mode & 0o077 == 0, "keys are private"


def test_trust_in_process_points_default_contexts_at_the_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    tls = make_bench_tls(tmp_path, [1], [])
    trust_in_process(tls.ca_file)
    assert os.environ["SSL_CERT_FILE"] == str(tls.ca_file)


@pytest.mark.parametrize("url", ["https://10.0.0.1:8081", "https://localhost:8081"])
def test_https_targets_stay_on_loopback(url: str) -> None:
    with pytest.raises(ValueError, match=r"only send traffic to 127\.0\.0\.1"):
        run_wrk(url, connections=1, seconds=1, script_args={})
    with pytest.raises(ValueError, match=r"only send traffic to 127\.0\.0\.1"):
        preload(url, "raftnode", keys=1)
