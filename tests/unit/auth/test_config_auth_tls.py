"""``auth:`` and ``tls:`` in the node config and ``raftnode check-config``; TLS reload and the
signed assertion a follower forwards for a certificate's principal."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml

from raftnode.cli import main
from raftnode.http.auth import sign_assertion, verify_assertion
from raftnode.http.connection import Request
from raftnode.tls import ClientCertificates, ServerTls, TlsSettings
from raftnode.tokens import Principal, Role
from tests.certs import make_ca, make_leaf


def _config(tmp_path: Path, **sections: Any) -> Path:
    (tmp_path / "secret").write_text("0123456789abcdef0123456789abcdef")
    raw = {
        "node_id": 1,
        "data_dir": str(tmp_path / "d"),
        "listen": {
            "client": "127.0.0.1:8081",
            "health": "127.0.0.1:10001",
            "peer": "127.0.0.1:9081",
        },
        "cluster": [{"id": 1, "name": "n1", "peer": "127.0.0.1:9081", "client": "127.0.0.1:8081"}],
        "secret_file": "secret",
        **sections,
    }
    path = tmp_path / "n1.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check-config", str(path)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_a_config_without_an_auth_choice_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _check(_config(tmp_path), capsys)
    assert code == 1 and "auth: set auth.token_file" in out and "anonymous_role" in out
    code, out = _check(_config(tmp_path, auth={"anonymous_role": "none"}), capsys)
    assert code == 0 and "anonymous role none" in out
    code, out = _check(_config(tmp_path, auth={"anonymous_role": "root"}), capsys)
    assert code == 1 and "auth.anonymous_role: must be one of" in out


def test_check_config_reads_the_token_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _check(_config(tmp_path, auth={"token_file": "tokens.yaml"}), capsys)
    assert code == 1 and "tokens.yaml does not exist" in out
    (tmp_path / "tokens.yaml").write_text("- {name: a, role: boss, sha256: abc}\n")
    code, out = _check(_config(tmp_path, auth={"token_file": "tokens.yaml"}), capsys)
    assert code == 1 and "[0].role" in out and "[0].sha256" in out
    (tmp_path / "tokens.yaml").write_text(f"- {{name: a, role: read, sha256: {'ab' * 32}}}\n")
    code, out = _check(_config(tmp_path, auth={"token_file": "tokens.yaml"}), capsys)
    assert code == 0 and "tokens from" in out


def test_check_config_loads_the_tls_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = make_ca(tmp_path / "pki")
    make_leaf(ca, tmp_path / "pki", "node", "n1")
    other = make_leaf(make_ca(tmp_path / "other", "other CA"), tmp_path / "other", "node", "x")
    tls = {"cert_file": "pki/node.crt", "key_file": "pki/node.key", "ca_file": "pki/absent.crt"}
    auth = {"anonymous_role": "admin"}
    code, out = _check(_config(tmp_path, auth=auth, tls=tls), capsys)
    assert code == 1 and "tls.ca_file" in out and "absent.crt does not exist" in out
    tls["ca_file"] = ca.cert_file.relative_to(tmp_path).as_posix()
    tls["key_file"] = str(other.key_file)  # a key that does not match the certificate
    code, out = _check(_config(tmp_path, auth=auth, tls=tls), capsys)
    assert code == 1 and "cannot load the certificate" in out
    tls["key_file"] = "pki/node.key"
    tls["client_certificates"] = "sometimes"
    code, out = _check(_config(tmp_path, auth=auth, tls=tls), capsys)
    assert code == 1 and "tls.client_certificates" in out
    tls["client_certificates"] = "optional"
    code, out = _check(_config(tmp_path, auth=auth, tls=tls), capsys)
    assert code == 0 and "https" in out


def test_a_bad_certificate_on_reload_keeps_the_one_in_force(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    leaf = make_leaf(ca, tmp_path, "node", "n1")
    tls = ServerTls(TlsSettings(leaf.cert_file, leaf.key_file, ca.cert_file))
    assert tls.front.minimum_version >= ssl.TLSVersion.TLSv1_2
    leaf.cert_file.write_text("not a certificate\n")
    before = tls._current
    assert not tls.reload()
    assert tls._current is before and tls.reloads == 0
    make_leaf(ca, tmp_path, "node", "n1")
    assert tls.reload() and tls._current is not before and tls.reloads == 1


def test_client_certificates_setting_asks_for_them(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    leaf = make_leaf(ca, tmp_path, "node", "n1")
    settings = TlsSettings(leaf.cert_file, leaf.key_file, ca.cert_file, ClientCertificates.REQUIRED)
    assert ServerTls(settings).front.verify_mode == ssl.CERT_REQUIRED


def _request(body: bytes = b"{}", path: str = "/admin/v1/members") -> Request:
    return Request("POST", path, path, {}, {}, body, "127.0.0.1", 0.0)


def test_an_assertion_holds_for_its_own_request_only_and_expires() -> None:
    secret = b"s" * 32
    principal = Principal("ops", Role.ADMIN, ("a/",))
    header = sign_assertion(secret, principal, _request(), now=1000.0)
    value = header.partition(" ")[2]
    assert verify_assertion(secret, value, _request(), now=1010.0) == principal
    assert verify_assertion(secret, value, _request(b'{"x":1}'), now=1010.0) is None
    assert verify_assertion(secret, value, _request(path="/kv/a"), now=1010.0) is None
    assert verify_assertion(secret, value, _request(), now=2000.0) is None
    assert verify_assertion(b"t" * 32, value, _request(), now=1010.0) is None
    assert verify_assertion(secret, "garbage", _request(), now=1010.0) is None
