"""Peer TLS: the URI SAN that names a node, the identity checks, the refusal reasons,
``peer_tls:`` in check-config, and two in-process transports that connect over mutual TLS
only when the listener's certificate names the node dialed."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from raftnode.cli import main
from raftnode.config import Address
from raftnode.devcluster import free_ports
from raftnode.raft.types import Message, MessageType
from raftnode.transport.auth import NO_CLUSTER
from raftnode.transport.peer import PeerTransport
from raftnode.transport.peer_tls import (
    PeerRefused,
    PeerTls,
    PeerTlsSettings,
    Refusal,
    certificate_identity,
    check_files,
    check_identity,
    classify,
    parse_peer_uri,
    peer_uri,
)
from tests.certs import Authority, make_ca, make_leaf

CLUSTER = bytes(range(16))


def _cert(*uris: str) -> dict[str, Any]:
    return {"subjectAltName": (("DNS", "n1"), *(("URI", u) for u in uris))}


@pytest.mark.parametrize(
    ("uri", "parsed"),
    [
        ("raftnode://*/node/1", ("*", 1)),
        (f"raftnode://{CLUSTER.hex()}/node/42", (CLUSTER.hex(), 42)),
        ("raftnode://*/node/0", None),
        ("raftnode://*/node/01", None),
        ("raftnode://*/node/-1", None),
        ("raftnode://*/node/1/", None),
        ("raftnode://prod/node/1", None),
        ("spiffe://*/node/1", None),
        (f"raftnode://*/node/{1 << 63}", None),
    ],
)
def test_the_uri_san_names_one_node(uri: str, parsed: tuple[str, int] | None) -> None:
    assert parse_peer_uri(uri) == parsed


def test_peer_uri_round_trips() -> None:
    assert parse_peer_uri(peer_uri(7)) == ("*", 7)
    assert parse_peer_uri(peer_uri(7, CLUSTER.hex())) == (CLUSTER.hex(), 7)


def test_a_certificate_must_name_exactly_one_node() -> None:
    assert certificate_identity(_cert(peer_uri(3))) == ("*", 3)
    for bad in (_cert(), _cert(peer_uri(1), peer_uri(2)), _cert("raftnode://x/node/1"), None):
        with pytest.raises(PeerRefused) as e:
            certificate_identity(bad)
        assert e.value.reason is Refusal.WRONG_ID


def _identity(cert: dict[str, Any], **kwargs: Any) -> int:
    return check_identity(cert, cluster_id=CLUSTER, no_cluster=NO_CLUSTER, **kwargs)


def test_identity_checks_and_their_reasons() -> None:
    assert _identity(_cert(peer_uri(2)), expected=2) == 2
    assert _identity(_cert(peer_uri(2)), members={2, 3}) == 2
    assert _identity(_cert(peer_uri(2, CLUSTER.hex())), members={2}) == 2
    cases: list[tuple[dict[str, Any], dict[str, Any], Refusal]] = [
        (_cert(peer_uri(3)), {"expected": 2}, Refusal.WRONG_ID),
        (_cert(peer_uri(7)), {"members": {2, 3}}, Refusal.NOT_A_MEMBER),
        (_cert(peer_uri(2, "ab" * 16)), {"members": {2}}, Refusal.OTHER_CLUSTER),
    ]
    for cert, kwargs, reason in cases:
        with pytest.raises(PeerRefused) as e:
            _identity(cert, **kwargs)
        assert e.value.reason is reason
    with pytest.raises(PeerRefused, match="belongs to cluster abab"):
        _identity(_cert(peer_uri(2, "ab" * 16)), members={2})
    # a node that has no cluster id yet cannot compare one
    assert check_identity(
        _cert(peer_uri(2, "ab" * 16)), cluster_id=NO_CLUSTER, no_cluster=NO_CLUSTER, members={2}
    )


def _verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    e = ssl.SSLCertVerificationError(1, message)
    e.verify_code, e.verify_message = code, message
    return e


def _ssl_error(reason: str) -> ssl.SSLError:
    e = ssl.SSLError(1, reason)
    e.reason = reason
    return e


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (_verify_error(20, "unable to get local issuer certificate"), Refusal.UNKNOWN_CA),
        (_verify_error(18, "self-signed certificate"), Refusal.UNKNOWN_CA),
        (_verify_error(10, "certificate has expired"), Refusal.EXPIRED),
        (_verify_error(9, "certificate is not yet valid"), Refusal.NOT_YET_VALID),
        (_verify_error(64, "IP address mismatch"), Refusal.WRONG_ADDRESS),
        (_ssl_error("PEER_DID_NOT_RETURN_A_CERTIFICATE"), Refusal.NO_CERTIFICATE),
        (_ssl_error("TLSV13_ALERT_CERTIFICATE_REQUIRED"), Refusal.NO_CERTIFICATE),
        (_ssl_error("TLSV1_ALERT_UNKNOWN_CA"), Refusal.UNKNOWN_CA),
        (_ssl_error("SSLV3_ALERT_CERTIFICATE_EXPIRED"), Refusal.EXPIRED),
        (_ssl_error("WRONG_VERSION_NUMBER"), Refusal.NOT_TLS),
        (_ssl_error("SOMETHING_ELSE"), Refusal.HANDSHAKE),
        (PeerRefused(Refusal.NOT_A_MEMBER, "node 7"), Refusal.NOT_A_MEMBER),
        (ConnectionResetError(), Refusal.HANDSHAKE),
    ],
)
def test_refusals_are_classified(error: BaseException, reason: Refusal) -> None:
    assert classify(error)[0] is reason


def _settings(ca: Authority, tmp_path: Path, node_id: int, **kwargs: Any) -> PeerTlsSettings:
    leaf = make_leaf(
        ca, tmp_path, f"n{node_id}", f"n{node_id}", uris=(peer_uri(node_id),), **kwargs
    )
    return PeerTlsSettings(leaf.cert_file, leaf.key_file, ca.cert_file)


def test_check_files_verifies_the_chain_the_validity_and_the_node_id(tmp_path: Path) -> None:
    ca, other = make_ca(tmp_path / "ca"), make_ca(tmp_path / "other", "other CA")
    good = _settings(ca, tmp_path, 1)
    assert check_files(good, 1) == []
    assert "names node 1" in check_files(good, 2)[0]
    foreign = PeerTlsSettings(good.cert_file, good.key_file, other.cert_file)
    assert "unknown CA" in check_files(foreign, 1)[0]
    old = _settings(
        ca,
        tmp_path / "old",
        1,
        valid_from=datetime.timedelta(-3),
        valid_until=datetime.timedelta(-1),
    )
    assert "certificate expired" in check_files(old, 1)[0]
    plain = make_leaf(ca, tmp_path, "plain", "plain")
    assert (
        "no raftnode:// URI"
        in check_files(PeerTlsSettings(plain.cert_file, plain.key_file, ca.cert_file), 1)[0]
    )
    assert check_files(good, 1, "127.0.0.1") == []
    assert check_files(good, 1, "localhost") == []
    assert "does not name 10.0.0.5" in check_files(good, 1, "10.0.0.5")[0]
    missing = PeerTlsSettings(tmp_path / "nope.crt", good.key_file, ca.cert_file)
    assert "peer_tls.cert_file" in check_files(missing, 1)[0]


def _config(tmp_path: Path, **top: Any) -> Path:
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
        **top,
    }
    path = tmp_path / "n1.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check-config", str(path)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_check_config_peer_tls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = make_ca(tmp_path / "ca")
    s = _settings(ca, tmp_path, 1)
    files = {"cert_file": str(s.cert_file), "key_file": str(s.key_file), "ca_file": str(s.ca_file)}
    # peer_tls authenticates the peers: no secret_file needed
    code, out = _check(_config(tmp_path, peer_tls=files), capsys)
    assert code == 0, out
    code, out = _check(_config(tmp_path, peer_tls=files, insecure=True), capsys)
    assert code == 1 and "insecure: cannot be true with peer_tls" in out
    two = _settings(ca, tmp_path / "two", 2)
    wrong = {**files, "cert_file": str(two.cert_file), "key_file": str(two.key_file)}
    code, out = _check(_config(tmp_path, peer_tls=wrong), capsys)
    assert code == 1 and "names node 2" in out and "this node is 1" in out
    code, out = _check(_config(tmp_path, peer_tls={**files, "cipher": "x"}), capsys)
    assert code == 1 and "peer_tls.cipher: unknown key" in out
    code, out = _check(_config(tmp_path), capsys)
    assert code == 1 and "secret_file: is required unless peer_tls is set" in out


def _ignore(message: Message) -> None:
    return None


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def test_transports_connect_over_mutual_tls_and_deliver(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    tls1, tls2 = PeerTls(_settings(ca, tmp_path, 1)), PeerTls(_settings(ca, tmp_path, 2))

    async def scenario() -> list[Message]:
        pa, pb = free_ports(2)
        a_addr, b_addr = Address("127.0.0.1", pa), Address("127.0.0.1", pb)
        got: list[Message] = []
        a = PeerTransport(1, a_addr, {2: b_addr}, b"", tls=tls1)
        b = PeerTransport(2, b_addr, {1: a_addr}, b"", tls=tls2)
        await b.start(got.append)
        await a.start(_ignore)
        try:
            await _until(lambda: a.connected(2))
            # Protocol 8 inside TLS: TLS protects the frames, no record MAC on top.
            assert a._links[2].version == 8 and a._links[2].sealer is None
            a.send([Message(MessageType.HEARTBEAT, to=2, frm=1, term=3)])
            await _until(lambda: bool(got))
        finally:
            await a.close()
            await b.close()
        return got

    got = asyncio.run(scenario())
    assert [(m.frm, m.to, m.term) for m in got] == [(1, 2, 3)]


def test_a_dialer_refuses_a_listener_whose_certificate_names_another_node(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca = make_ca(tmp_path / "ca")
    # the process at node 2's address holds node 3's certificate
    tls1, tls3 = PeerTls(_settings(ca, tmp_path, 1)), PeerTls(_settings(ca, tmp_path, 3))

    async def scenario() -> bool:
        pa, pb = free_ports(2)
        a_addr, b_addr = Address("127.0.0.1", pa), Address("127.0.0.1", pb)
        a = PeerTransport(1, a_addr, {2: b_addr}, b"", tls=tls1)
        impostor = PeerTransport(2, b_addr, {1: a_addr}, b"", tls=tls3)
        await impostor.start(_ignore)
        await a.start(_ignore)
        try:
            await _until(lambda: "wrong id" in _fields(caplog))
            return a.connected(2)
        finally:
            await a.close()
            await impostor.close()

    with caplog.at_level("WARNING"):
        assert asyncio.run(scenario()) is False
    assert "dialed node 2, its certificate names node 3" in _fields(caplog)


def _fields(caplog: pytest.LogCaptureFixture, message: str | None = None) -> str:
    return "\n".join(
        str(getattr(r, "fields", ""))
        for r in caplog.records
        if message is None or r.getMessage() == message
    )


def test_a_dialer_refuses_a_listener_of_another_ca_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca, other = make_ca(tmp_path / "ca"), make_ca(tmp_path / "other", "other CA")
    tls1 = PeerTls(_settings(ca, tmp_path, 1))
    tls2 = PeerTls(_settings(other, tmp_path / "o", 2))

    async def scenario() -> bool:
        pa, pb = free_ports(2)
        a_addr, b_addr = Address("127.0.0.1", pa), Address("127.0.0.1", pb)
        a = PeerTransport(1, a_addr, {2: b_addr}, b"", tls=tls1)
        stranger = PeerTransport(2, b_addr, {1: a_addr}, b"", tls=tls2)
        await stranger.start(_ignore)
        await a.start(_ignore)
        try:
            await _until(lambda: "unknown CA" in _fields(caplog, "peer connect failed"))
            return a.connected(2) or stranger.connected(1)
        finally:
            await a.close()
            await stranger.close()

    with caplog.at_level("WARNING"):
        assert asyncio.run(scenario()) is False
    assert not any("SSL Error on" in r.getMessage() for r in caplog.records)
