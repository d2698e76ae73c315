"""Test certificates made with ``cryptography``: a CA, and leaf certificates it signs (for
127.0.0.1 and localhost, or a client name), written as PEM files under a test's tmp dir."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True, slots=True)
class Authority:
    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    cert_file: Path


@dataclass(frozen=True, slots=True)
class Leaf:
    cert_file: Path
    key_file: Path
    serial: int


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def make_ca(directory: Path, name: str = "raftnode test CA") -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name.replace(' ', '-')}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Authority(name, key, cert, path)


def make_leaf(
    ca: Authority,
    directory: Path,
    stem: str,
    common_name: str,
    *,
    client: bool = False,
    uris: tuple[str, ...] = (),
    valid_from: datetime.timedelta = datetime.timedelta(minutes=-5),
    valid_until: datetime.timedelta = datetime.timedelta(days=1),
) -> Leaf:
    """A certificate for 127.0.0.1/localhost (server and client use), or ``client`` only;
    ``uris`` are added as URI alternative names (a peer's ``raftnode://<cluster>/node/<id>``);
    ``valid_from``/``valid_until`` are from now (an expired one: both negative)."""
    key = ec.generate_private_key(ec.SECP256R1())
    serial = x509.random_serial_number()
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    names: list[x509.GeneralName] = [x509.DNSName(common_name)]
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    if not client:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        names += [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(_now() + valid_from)
        .not_valid_after(_now() + valid_until)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_file)
    return Leaf(cert_file, key_file, serial)


def served_serial(host: str, port: int, ca_file: Path, timeout: float = 5.0) -> int:
    """The serial number of the certificate a TLS listener presents now (verified)."""
    import socket
    import ssl

    ctx = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number
