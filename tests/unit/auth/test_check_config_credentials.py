"""``raftnode check-config --credentials-dir``: a config whose keys are systemd credentials
(``/run/credentials/<unit>/NAME``, copied only when the unit starts) is checked against the
``LoadCredential=`` source files, as Ansible's ``validate:`` does before the unit runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from raftnode.cli import main
from raftnode.transport.peer_tls import peer_uri
from tests.certs import make_ca, make_leaf

UNIT_DIR = "/run/credentials/raftnode-test-absent.service"


def _config(tmp_path: Path, cert: Path, ca: Path) -> Path:
    files = {"cert_file": str(cert), "key_file": f"{UNIT_DIR}/node.key", "ca_file": str(ca)}
    raw = {
        "node_id": 1,
        "data_dir": str(tmp_path / "d"),
        "listen": {
            "client": "127.0.0.1:8081",
            "health": "127.0.0.1:10001",
            "peer": "127.0.0.1:9081",
        },
        "cluster": [{"id": 1, "name": "n1", "peer": "127.0.0.1:9081", "client": "127.0.0.1:8081"}],
        "auth": {"anonymous_role": "none"},
        "tls": files,
        "peer_tls": files,
    }
    path = tmp_path / "n1.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["check-config", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_keys_under_run_credentials_are_read_from_the_credentials_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = make_ca(tmp_path / "ca")
    leaf = make_leaf(ca, tmp_path, "n1", "n1", uris=(peer_uri(1),))
    config = _config(tmp_path, leaf.cert_file, ca.cert_file)
    sources = tmp_path / "credentials"
    sources.mkdir()
    # Without the option the key does not exist yet: the check says so.
    code, out = _check(capsys, str(config))
    assert code == 1 and f"{UNIT_DIR}/node.key" in out
    # The source directory holds no node.key: still refused, naming the source.
    code, out = _check(capsys, str(config), "--credentials-dir", str(sources))
    assert code == 1 and str(sources / "node.key") in out
    (sources / "node.key").write_bytes(leaf.key_file.read_bytes())
    code, out = _check(capsys, str(config), "--credentials-dir", str(sources))
    assert code == 0, out
    # A key that does not match the certificate is refused through the same path.
    other = make_leaf(ca, tmp_path / "other", "n1", "n1", uris=(peer_uri(1),))
    (sources / "node.key").write_bytes(other.key_file.read_bytes())
    code, out = _check(capsys, str(config), "--credentials-dir", str(sources))
    assert code == 1
