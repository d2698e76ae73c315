"""HTTPS on the client and health listeners, on real processes: forwarding over HTTPS, a
plaintext client and a client that does not trust the CA refused, a client certificate mapped
to a principal, and the certificate reloaded on SIGHUP without a restart."""

from __future__ import annotations

import signal
import socket
import ssl
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftnode.cli import main as raftnode
from raftnode.tokens import Role, new_token, token_line
from tests.certs import Authority, make_ca, make_leaf, served_serial
from tests.integration.cluster import Cluster, http

ADMIN_TOKEN = new_token()
AUTHORITIES: dict[str, Authority] = {}
"""The test CA (with its key), to sign a renewed certificate."""


@pytest.fixture(scope="module")
def c() -> Iterator[Cluster]:
    base = Path(tempfile.mkdtemp(prefix="raftnode-it-tls-"))
    ca = AUTHORITIES["ca"] = make_ca(base / "pki")
    make_leaf(ca, base / "pki", "node", "raftnode-node")
    make_leaf(ca, base / "pki", "ops", "ops.example", client=True)
    make_leaf(ca, base / "pki", "root", "root.example", client=True)
    (base / "tokens.yaml").write_text(
        token_line("admin", Role.ADMIN, [], ADMIN_TOKEN)
        + "\n- {name: ops, role: read, certificate: ops.example}"
        + "\n- {name: root, role: admin, certificate: root.example}\n"
    )
    tls = {
        "cert_file": "pki/node.crt",
        "key_file": "pki/node.key",
        "ca_file": ca.cert_file.relative_to(base).as_posix(),
        "client_certificates": "optional",
    }
    auth = {"token_file": "tokens.yaml"}
    limits = {"header_timeout_ms": 1500}
    cluster = Cluster(n=2, tls=tls, auth=auth, limits=limits, base=base)
    try:
        cluster.start()
        cluster.leader()
        yield cluster
    finally:
        cluster.close()


def test_writes_forward_to_the_leader_over_https(c: Cluster) -> None:
    leader = c.leader()
    follower = 2 if leader == 1 else 1
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    r = c.request(follower, "PUT", "/kv/tls-key", {"value": "v"}, auth)
    assert r.status == 200 and "X-Raftnode-Forwarded-To" in r.headers, r
    got = c.request(leader, "GET", "/kv/tls-key", headers=auth)
    assert got.status == 200 and got.json()["value"] == "v"


def test_a_plaintext_client_is_refused(c: Cluster) -> None:
    leader = c.leader()
    for port in (c.node(leader).ports.client, c.node(leader).ports.health):
        r = http("GET", f"http://127.0.0.1:{port}/kv/tls-key", timeout=3.0)
        assert r.status == 0, r  # no HTTP answer to plaintext on a TLS port
        with socket.create_connection(("127.0.0.1", port), timeout=3.0) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                answer = s.recv(4096)
            except ConnectionResetError:
                answer = b""
            assert b"HTTP/1.1" not in answer, answer
    assert c.health(leader, "/health").status == 200  # and HTTPS still serves


def test_a_connection_that_never_handshakes_is_closed(c: Cluster) -> None:
    """A TLS handshake is bounded like a header block (limits.header_timeout_ms)."""
    port = c.node(c.leader()).ports.client
    with socket.create_connection(("127.0.0.1", port), timeout=10.0) as s:
        started = time.monotonic()
        try:
            closed = s.recv(1) == b""
        except ConnectionResetError:
            closed = True
        assert closed and time.monotonic() - started < 8.0


def test_a_client_that_does_not_trust_the_ca_fails(c: Cluster, tmp_path: Path) -> None:
    other = make_ca(tmp_path, "some other CA")
    context = ssl.create_default_context(cafile=str(other.cert_file))
    leader = c.leader()
    url = c.url(leader, "/kv/tls-key")
    assert http("GET", url, context=context, timeout=3.0).status == 0
    with pytest.raises(ssl.SSLCertVerificationError):
        served_serial("127.0.0.1", c.node(leader).ports.client, other.cert_file)


def test_a_client_certificate_maps_to_its_principal(c: Cluster) -> None:
    leader = c.leader()
    ca_file = c.base / "pki" / "raftnode-test-CA.crt"
    context = ssl.create_default_context(cafile=str(ca_file))
    context.load_cert_chain(c.base / "pki" / "ops.crt", c.base / "pki" / "ops.key")
    assert http("GET", c.url(leader, "/kv/tls-key"), context=context).status == 200
    put = http("PUT", c.url(leader, "/kv/tls-key"), {"value": "x"}, context=context)
    assert put.status == 403 and "write" in put.json()["message"]
    assert c.request(leader, "GET", "/kv/tls-key").status == 401  # no certificate, no token


def test_a_certificate_principal_is_forwarded_as_itself(c: Cluster) -> None:
    """The leader cannot see the client's certificate: the follower forwards the principal,
    signed with the cluster secret and bound to the request."""
    leader = c.leader()
    follower = 2 if leader == 1 else 1
    pki = c.base / "pki"
    root = ssl.create_default_context(cafile=str(pki / "raftnode-test-CA.crt"))
    root.load_cert_chain(pki / "root.crt", pki / "root.key")
    members = http("GET", c.url(follower, "/admin/v1/members"), context=root)
    assert members.status == 200 and members.json()["leader"] == leader, members
    put = http("PUT", c.url(follower, "/kv/root-key"), {"value": "r"}, context=root)
    assert put.status == 200 and put.headers.get("X-Raftnode-Forwarded-To") == str(leader), put
    c.wait_for(
        "the leader's admin log naming the certificate's principal",
        lambda: "principal=root" in c.log(leader),
        timeout=5.0,
    )
    forged = {"Authorization": "Raftnode-Assertion e30=.00"}
    assert c.request(leader, "GET", "/admin/v1/members", headers=forged).status == 401


def test_the_cli_speaks_https_with_the_ca(c: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    ca_file = str(c.base / "pki" / "raftnode-test-CA.crt")
    endpoint = c.url(c.leader(), "")
    args = ["member", "list", "--endpoint", endpoint, "--ca-file", ca_file, "--json"]
    assert raftnode([*args, "--token", ADMIN_TOKEN]) == 0
    assert '"members"' in capsys.readouterr().out
    assert raftnode(args) == 1
    assert "401" in capsys.readouterr().err


def test_sighup_reloads_the_certificate_without_a_restart(c: Cluster) -> None:
    ca_file = c.base / "pki" / "raftnode-test-CA.crt"
    node = c.leader()
    pid = c.procs[node].pid
    ports = c.node(node).ports
    before = served_serial("127.0.0.1", ports.client, ca_file)
    # The same CA signs a new certificate for the node (its key pair changes too).
    renewed = make_leaf(AUTHORITIES["ca"], c.base / "pki", "node", "raftnode-node")
    assert renewed.serial != before
    c.signal(node, signal.SIGHUP)
    c.wait_for(
        "the renewed certificate on the client port",
        lambda: served_serial("127.0.0.1", ports.client, ca_file) == renewed.serial,
        timeout=10.0,
    )
    assert served_serial("127.0.0.1", ports.health, ca_file) == renewed.serial
    assert c.procs[node].pid == pid and c.procs[node].poll() is None
    assert c.health(node, "/health").status == 200
