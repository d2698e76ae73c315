"""A man in the middle on the peer network, on real processes: a TCP proxy in front of node 1's
Raft port flips one byte of a frame after the handshake (peer protocol 8). Node 1 drops that
stream, logs why and counts it; the dialer reconnects and the cluster keeps serving writes."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import yaml

from raftnode.devcluster import free_ports
from tests.integration.cluster import Cluster

HELLO_BYTES = 10 + 2 + 16 + 32 + 16
"""A negotiating hello: magic, offered range, ids, nonce, cluster id."""
PROOF_BYTES = 32
FLIP_AT = HELLO_BYTES + PROOF_BYTES + 4 + 20
"""A byte of the first frame's payload (past its length field), counted from the dialer's
first byte."""


class FlippingProxy:
    """Relays every connection to ``target``; flips one byte of the dialer's stream at
    ``FLIP_AT`` on the first connection that gets that far, once."""

    def __init__(self, port: int, target: int) -> None:
        self.server = socket.create_server(("127.0.0.1", port))
        self.server.settimeout(0.2)
        self.target = target
        self.flipped = threading.Event()
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.stopping = False
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:
                conn.close()
                continue
            with self.lock:
                self.sockets += [conn, upstream]
            for src, dst, dialer_side in ((conn, upstream, True), (upstream, conn, False)):
                t = threading.Thread(target=self._pump, args=(src, dst, dialer_side), daemon=True)
                t.start()
                self.threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, dialer_side: bool) -> None:
        offset = 0
        src.settimeout(0.5)
        try:
            while not self.stopping:
                try:
                    data = src.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                if dialer_side and offset <= FLIP_AT < offset + len(data):
                    with self.lock:
                        flip = not self.flipped.is_set()
                        self.flipped.set()
                    if flip:
                        b = bytearray(data)
                        b[FLIP_AT - offset] ^= 0x40
                        data = bytes(b)
                offset += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.stopping = True
        self.server.close()
        with self.lock:
            for s in self.sockets:
                s.close()
        for t in self.threads:
            t.join(timeout=2)


@contextlib.contextmanager
def node_1_behind_a_proxy() -> Iterator[tuple[Cluster, FlippingProxy]]:
    c = Cluster(3)
    proxy = None
    try:
        public = c.node(1).ports.peer  # the address every peer dials
        (private,) = free_ports(1)
        config = yaml.safe_load(c.node(1).config.read_text())
        config["listen"]["peer"] = f"127.0.0.1:{private}"
        c.node(1).config.write_text(yaml.safe_dump(config, sort_keys=False))
        c.start()
        # The proxy opens once node 1 listens: before, dialers see a refused port (not a
        # hello closed unanswered, which would send them to the legacy hello for a while).
        c.wait_for("node 1 to serve", lambda: c.health(1, "/health").status == 200)
        proxy = FlippingProxy(public, private)
        c.leader()
        yield c, proxy
    finally:
        if proxy is not None:
            proxy.close()
        c.close()


def _bad_mac_count(c: Cluster, node: int) -> float:
    metrics = c.health(node, "/metrics").body.decode()
    for line in metrics.splitlines():
        if line.startswith('raftnode_peer_auth_failures_total{reason="bad_frame_mac"}'):
            return float(line.split()[-1])
    return 0.0


def test_a_byte_flipped_after_the_handshake_drops_the_stream_and_writes_go_on() -> None:
    with node_1_behind_a_proxy() as (c, proxy):
        written = 0
        deadline = time.monotonic() + 20
        while not proxy.flipped.is_set() and time.monotonic() < deadline:
            c.put_retrying([1, 2, 3], f"before-{written}", "v")
            written += 1
        assert proxy.flipped.is_set(), "no frame crossed the proxy"
        c.wait_for(
            "node 1 to log the bad frame",
            lambda: "peer frame failed authentication" in c.log(1),
            timeout=10,
        )
        lines = [x for x in c.log(1).splitlines() if "peer frame failed authentication" in x]
        assert len(lines) == 1, lines
        assert _bad_mac_count(c, 1) == 1
        # The dialer reconnected through the (now honest) proxy: node 1 keeps taking part.
        for i in range(20):
            c.put_retrying([1, 2, 3], f"after-{i}", str(i))
        c.wait_for(
            "node 1 to read the last write",
            lambda: c.get(1, "after-19").status == 200,
            timeout=10,
        )
        assert c.get(1, "after-19").json()["value"] == "19"
        assert "peer connection refused" not in c.log(1)
        for node in (2, 3):  # every stream to node 1 spoke 8 (frames with a MAC)
            links = [
                x for x in c.log(node).splitlines() if '"peer connected"' in x and "peer=1 " in x
            ]
            assert links and all("version=8" in x for x in links), links
