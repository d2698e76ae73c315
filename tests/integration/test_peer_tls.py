"""Mutual TLS 1.3 between peers, on real processes: a cluster whose peers speak only TLS
elects and replicates; dialers with a certificate of another CA, an expired one, one naming a
node that is not a member, one whose id differs from the hello's, none at all, or no TLS are
refused with one log line naming the reason while the cluster keeps serving; a CA swapped on
disk is picked up on SIGHUP without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import signal
import socket
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from raftnode.transport.auth import NEGOTIATE_MAGIC, NO_CLUSTER, AuthError, dial_handshake
from raftnode.transport.peer_tls import peer_uri
from tests.certs import Authority, Leaf, make_ca, make_leaf
from tests.integration.cluster import Cluster

PKI: dict[str, Authority] = {}


@pytest.fixture(scope="module")
def c() -> Iterator[Cluster]:
    base = Path(tempfile.mkdtemp(prefix="raftnode-it-peertls-"))
    ca = PKI["ca"] = make_ca(base / "pki")
    PKI["other"] = make_ca(base / "other", "another CA")
    for i in (1, 2, 3):
        make_leaf(ca, base / "pki", f"n{i}", f"n{i}", uris=(peer_uri(i),))
    (base / "pki" / "ca.crt").write_bytes(ca.cert_file.read_bytes())
    peer_tls = {
        "cert_file": "pki/n{node_id}.crt",
        "key_file": "pki/n{node_id}.key",
        "ca_file": "pki/ca.crt",
    }
    cluster = Cluster(n=3, peer_tls=peer_tls, base=base)
    try:
        cluster.start()
        cluster.leader()
        yield cluster
    finally:
        cluster.close()


def _dial(
    c: Cluster, to: int, as_id: int, leaf: Leaf | None, served: list[int] | None = None
) -> str:
    """Dial node ``to``'s peer port over TLS as node ``as_id`` presenting ``leaf``, run the
    hello; "accepted" or "refused: ..." (bounded: 10 s). The serial number of the
    certificate ``to`` presented is appended to ``served``."""

    async def run() -> str:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_verify_locations(cafile=str(PKI["ca"].cert_file))
        ctx.load_verify_locations(cafile=str(PKI["other"].cert_file))
        if leaf is not None:
            ctx.load_cert_chain(leaf.cert_file, leaf.key_file)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", c.node(to).ports.peer, ssl=ctx, server_hostname="127.0.0.1"
        )

        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        if served is not None:
            served.append(x509.load_der_x509_certificate(der).serial_number)

        async def write(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        try:
            secret = (c.base / "secret").read_bytes().strip()
            await dial_handshake(reader.readexactly, write, secret, as_id, to, NO_CLUSTER)
            return "accepted"
        except (AuthError, ssl.SSLError, OSError, asyncio.IncompleteReadError) as e:
            return f"refused: {e!r}"
        finally:
            writer.close()

    return asyncio.run(asyncio.wait_for(run(), 10))


def _refused_with(c: Cluster, node: int, reason: str, before: int) -> None:
    c.wait_for(
        f"a refusal with reason {reason!r} in n{node}'s log",
        lambda: any(
            "peer connection refused" in line and reason in line
            for line in c.log(node)[before:].splitlines()
        ),
        timeout=10,
    )
    assert "SSL Error on" not in c.log(node)[before:]  # Tornado's own line: one line only


def _leaf(c: Cluster, stem: str, node_id: int, **kwargs: object) -> Leaf:
    ca = kwargs.pop("ca", PKI["ca"])
    assert isinstance(ca, Authority)
    return make_leaf(ca, c.base / "test-pki", stem, stem, uris=(peer_uri(node_id),), **kwargs)  # type: ignore[arg-type]


def test_a_cluster_on_peer_tls_elects_and_replicates(c: Cluster) -> None:
    leader = c.leader()
    assert c.put(leader, "peer-tls", "v").status == 200
    for n in (1, 2, 3):
        c.wait_for(f"n{n} has the write", lambda n=n: c.get(n, "peer-tls").status == 200)
        assert c.get(n, "peer-tls").json()["value"] == "v"
    assert "peer_tls=True" in c.log(1)


def test_a_member_certificate_of_the_cluster_ca_is_accepted(c: Cluster) -> None:
    assert _dial(c, 1, 2, _leaf(c, "good2", 2)) == "accepted"


@pytest.mark.parametrize(
    ("stem", "kwargs", "as_id", "reason"),
    [
        ("foreign", {"ca": "other"}, 2, "unknown CA"),
        (
            "expired",
            {"valid_from": datetime.timedelta(days=-3), "valid_until": datetime.timedelta(-1)},
            2,
            "certificate expired",
        ),
        ("stranger", {}, 7, "not a member"),
        ("liar", {}, 3, "wrong id"),  # the certificate names node 2, the hello says 3
    ],
)
def test_a_bad_dialer_certificate_is_refused_with_its_reason(
    c: Cluster, stem: str, kwargs: dict[str, object], as_id: int, reason: str
) -> None:
    cert_id = 2 if stem in ("liar", "expired", "foreign") else as_id
    if kwargs.get("ca") == "other":
        kwargs = {"ca": PKI["other"]}
    before = len(c.log(1))
    outcome = _dial(c, 1, as_id, _leaf(c, stem, cert_id, **kwargs))
    assert outcome.startswith("refused"), outcome
    _refused_with(c, 1, reason, before)
    assert c.put_retrying([1, 2, 3], f"after-{stem}", "v").status == 200


def test_a_dialer_without_a_certificate_is_refused(c: Cluster) -> None:
    before = len(c.log(1))
    assert _dial(c, 1, 2, None).startswith("refused")
    _refused_with(c, 1, "no client certificate", before)


def test_the_peer_port_does_not_speak_plaintext(c: Cluster) -> None:
    before = len(c.log(1))
    with socket.create_connection(("127.0.0.1", c.node(1).ports.peer), timeout=5) as s:
        s.sendall(NEGOTIATE_MAGIC + bytes(2 + 16 + 32 + 16))
        s.settimeout(5)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(100):  # at most a TLS alert, then the listener closes
                received += chunk
        assert not received or received[0] == 0x15, received  # 0x15: a TLS alert record
    _refused_with(c, 1, "not TLS", before)


def test_a_ca_swapped_on_disk_is_used_after_sighup(c: Cluster) -> None:
    other = PKI["other"]
    newcomer = _leaf(c, "rotated2", 2, ca=other)
    assert _dial(c, 1, 2, newcomer).startswith("refused")
    bundle = PKI["ca"].cert_file.read_bytes() + other.cert_file.read_bytes()
    (c.base / "pki" / "ca.crt").write_bytes(bundle)
    before = len(c.log(1))
    c.signal(1, signal.SIGHUP)
    c.wait_for(
        "the peer CA reloaded",
        lambda: "peer TLS certificate and CA reloaded" in c.log(1)[before:],
        timeout=10,
    )
    assert _dial(c, 1, 2, newcomer) == "accepted"
    assert c.put_retrying([1, 2, 3], "after-reload", "v").status == 200


def test_a_node_certificate_swapped_on_disk_is_served_after_sighup(c: Cluster) -> None:
    served: list[int] = []
    assert _dial(c, 3, 2, _leaf(c, "probe2", 2), served) == "accepted"
    renewed = make_leaf(PKI["ca"], c.base / "pki", "n3", "n3", uris=(peer_uri(3),))
    assert served[0] != renewed.serial
    before = len(c.log(3))
    c.signal(3, signal.SIGHUP)
    c.wait_for(
        "n3's peer certificate reloaded",
        lambda: "peer TLS certificate and CA reloaded" in c.log(3)[before:],
        timeout=10,
    )
    assert _dial(c, 3, 2, _leaf(c, "probe2b", 2), served) == "accepted"
    assert served[1] == renewed.serial
    assert c.put_retrying([1, 2, 3], "after-renewal", "v").status == 200


def test_no_node_logged_an_error(c: Cluster) -> None:
    for n in (1, 2, 3):
        errors = [x for x in c.log(n).splitlines() if "level=error" in x or "Traceback" in x]
        assert errors == [], errors
