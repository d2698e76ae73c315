"""Certificates for the TLS rows of ``make bench-peers``: one CA, a certificate per raftnode
node (client/health listeners and the peer port, naming ``raftnode://*/node/<id>``) and per etcd
member (client and peer URLs), all for 127.0.0.1; and this process set to trust that CA, so
the benchmark's own polling (readiness, leader, preload) verifies what it talks to.

Made with ``tests/certs.py`` (the ``cryptography`` package of the dev extra): the same
certificates the integration tests use, short-lived, under the run's work directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tests.certs import make_ca, make_leaf


@dataclass(frozen=True, slots=True)
class BenchTls:
    directory: Path
    ca_file: Path

    def cert(self, stem: str) -> Path:
        return self.directory / f"{stem}.crt"

    def key(self, stem: str) -> Path:
        return self.directory / f"{stem}.key"


def make_bench_tls(directory: Path, raft_ids: list[int], etcd_names: list[str]) -> BenchTls:
    """The CA and every leaf certificate the TLS clusters need, written under ``directory``."""
    ca = make_ca(directory, "raftnode bench CA")
    for nid in raft_ids:
        make_leaf(ca, directory, f"raftnode-{nid}", f"n{nid}", uris=(f"raftnode://*/node/{nid}",))
    for name in etcd_names:
        make_leaf(ca, directory, f"etcd-{name}", name)
    return BenchTls(directory, ca.cert_file)


def trust_in_process(ca_file: Path) -> None:
    """Make every default TLS context of this process (urllib's, http.client's) verify against
    ``ca_file``: OpenSSL reads SSL_CERT_FILE each time a context loads its default CAs. The
    benchmark talks to loopback only, so the system's CAs are not needed; plain HTTP is
    unaffected. Child processes inherit it (harmless: they are given their CA explicitly)."""
    os.environ["SSL_CERT_FILE"] = str(ca_file)
