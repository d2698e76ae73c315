"""Peer connections: persistent, authenticated TCP streams carrying framed messages.

Every node dials every other node once and sends its messages for that node over that stream;
it receives the other nodes' messages on the streams they dialed to its listener. So each pair
of nodes shares two streams, one per direction, and each stream is authenticated both ways at
connect time (``raftnode.transport.auth``). From peer protocol 8 on, without ``peer_tls``,
every frame also carries a MAC under a key of that connection (``raftnode.transport.frame_mac``);
a frame that fails it closes the stream, logs one line and counts in ``on_auth_failure``.

Each connection is an ``asyncio.Protocol`` (``raftnode.transport.peer_stream``): received
frames are decoded and delivered from ``data_received``, with no coroutine per frame. Sending
never blocks the caller: messages are encoded into the peer's queue and one callback, scheduled
with the first message of a loop iteration, writes everything queued in one write (batching).
When a peer is unreachable its queue is dropped (Raft retransmits), the link reconnects with
exponential backoff and the queue is bounded, so a dead or stopped peer costs memory only up to
``max_queue_bytes``.

A stream that was up and then reset or closed, followed by a refused reconnect (nothing listens
on the peer's address: its process is gone), is reported as the peer lost (``PeerReachability``),
and the next successful connection as the peer reachable again; the core then replaces a dead
leader without waiting out an election timeout (``RaftCore.report_peer_lost``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from tornado.netutil import bind_sockets

from raftnode.config import Address
from raftnode.raft.types import Message
from raftnode.transport.auth import (
    LEGACY_VERSION,
    MAC_VERSION,
    MIN_VERSION,
    NO_CLUSTER,
    AuthError,
    Handshake,
    IdentityMismatch,
    LegacyListenerSuspected,
    ProofFailed,
    VersionMismatch,
    accept_handshake,
    dial_handshake,
)
from raftnode.transport.carrier import Deliver, PeerReachability
from raftnode.transport.codec import (
    DEFAULT_MAX_FRAME_BYTES,
    MESSAGE_FRAME_HEADER,
    CodecError,
    decode_message,
    encode_message,
    frame,
)
from raftnode.transport.frame_mac import (
    RECORD_TARGET_BYTES,
    TAG_BYTES,
    FrameAuthError,
    RecordOpener,
    RecordSealer,
    split_frames,
)
from raftnode.transport.peer_stream import PeerStream, StreamClosed
from raftnode.transport.peer_tls import (
    PEER_TLS_SECRET,
    PeerRefused,
    PeerTls,
    Refusal,
    check_identity,
    classify,
)

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 5.0
LEGACY_RETRY_SECONDS = 60.0
"""How long a peer that closed a negotiating hello unanswered is dialed with the legacy one."""
CONNECT_TIMEOUT = 2.0
BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0
AUTH_BAD_PROOF = "bad_proof"
"""A dialer's handshake MAC did not verify (wrong secret, or tampered with)."""
AUTH_BAD_FRAME_MAC = "bad_frame_mac"
"""A frame after the handshake failed its MAC (injected, altered, replayed, reordered, dropped)."""
AUTH_OLD_PROTOCOL = "old_protocol"
"""A dialer offered only protocols older than ``peer_min_protocol``."""


class _PeerLink:
    """The outbound connection to one peer: queue, flush callback, reconnect with backoff."""

    def __init__(self, transport: PeerTransport, peer_id: int, address: Address) -> None:
        self.transport = transport
        self.peer_id = peer_id
        self.address = address
        self.loop = asyncio.get_running_loop()
        self.queue: list[bytes] = []
        self.queued_bytes = 0
        self.flush_scheduled = False
        self.retry_now = asyncio.Event()
        """Set when the peer dialed us: its process is up, so stop backing off."""
        self.connected = False
        self.task: asyncio.Task[None] | None = None
        self.stream: PeerStream | None = None
        self.stream_ended = False
        """A stream to the peer was up and ended (reset or closed), none succeeded since."""
        self.reported_lost = False
        self.legacy_until = 0.0
        """Until then, dial with the legacy hello: the peer looked like a release before
        version negotiation (it closed a negotiating hello unanswered)."""
        self.version = 0
        """The peer protocol version of the current stream (0: none)."""
        self.sealer: RecordSealer | None = None
        """Seals the frames of the current stream into records (protocol 8 on, without peer
        TLS)."""

    def enqueue(self, payload: bytes) -> None:
        if not self.connected or self.queued_bytes + len(payload) > self.transport.max_queue_bytes:
            return  # dropped: Raft retransmits what matters
        self.queue.append(frame(payload))
        self.queued_bytes += len(payload) + MESSAGE_FRAME_HEADER.size
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write everything queued as one write (one record, one MAC, however many messages);
        while the socket's buffer is full the queue waits (``enqueue`` bounds it)."""
        self.flush_scheduled = False
        stream = self.stream
        if stream is None or not self.queue or not stream.writable or stream.closed.done():
            return
        sealer = self.sealer
        batch = b"".join(self.queue) if sealer is None else sealer.seal_all(self.queue)
        self.queue.clear()
        self.queued_bytes = 0
        stream.send(batch)

    async def run(self) -> None:
        backoff = BACKOFF_MIN
        while not self.transport.closed:
            try:
                stream = await self._connect()
            except (OSError, TimeoutError, AuthError) as e:
                if isinstance(e, LegacyListenerSuspected) and self._may_fall_back():
                    # Only a negotiating hello raises this, so the next attempt (legacy) cannot.
                    self.legacy_until = time.monotonic() + LEGACY_RETRY_SECONDS
                    log.info(
                        "peer speaks an older protocol? dialing again with the version 2 hello",
                        extra={"fields": {"peer": self.peer_id, "addr": str(self.address)}},
                    )
                    continue
                if self.stream_ended and not self.reported_lost and _refused(e):
                    self.reported_lost = True
                    log.info(
                        "peer lost: stream ended and reconnect refused",
                        extra={"fields": {"peer": self.peer_id, "addr": str(self.address)}},
                    )
                    self.transport.reachability(self.peer_id, False)
                level = logging.WARNING if isinstance(e, AuthError) else logging.DEBUG
                log.log(
                    level,
                    "peer connect failed",
                    extra={
                        "fields": {
                            "peer": self.peer_id,
                            "addr": str(self.address),
                            "error": repr(e),
                        }
                    },
                )
                self.retry_now.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.retry_now.wait(), backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            backoff = BACKOFF_MIN
            self.stream = stream
            self.connected = True
            self.transport.versions_out[self.peer_id] = self.version
            self.transport.latest_versions[self.peer_id] = self.version
            self.stream_ended = False
            log.info(
                "peer connected",
                extra={
                    "fields": {
                        "peer": self.peer_id,
                        "addr": str(self.address),
                        "version": self.version,
                    }
                },
            )
            if self.reported_lost:
                self.reported_lost = False
                self.transport.reachability(self.peer_id, True)
            # The listener never writes after the hello: any byte closes the stream, and so
            # does the other side's close; both end this wait.
            stream.on_writable = self.flush
            stream.write_only()
            try:
                error = await stream.closed
                log.info(
                    "peer disconnected",
                    extra={"fields": {"peer": self.peer_id, "error": repr(StreamClosed(error))}},
                )
            finally:
                self.connected = False
                self.stream_ended = True
                self.queue.clear()
                self.queued_bytes = 0
                self.stream = None
                self.sealer = None
                stream.abort(None)

    def _may_fall_back(self) -> bool:
        """Whether a negotiating hello closed unanswered may be retried with the legacy one
        (version 2: no frame MAC). Never under ``peer_min_protocol`` above 2; and not while
        the latest stream with this peer (either way) spoke ``MAC_VERSION`` or later: anyone
        on the path can close a hello, and must not thereby downgrade two nodes that both
        speak 8. A peer rolled back to an old release dials us with the legacy hello, which
        lowers what we last saw and allows the fallback again."""
        t = self.transport
        if t.min_version > LEGACY_VERSION:
            return False
        if t.latest_versions.get(self.peer_id, 0) >= MAC_VERSION:
            log.warning(
                "peer closed the hello unanswered; it spoke protocol 8 or later last, so no "
                "fallback to the legacy hello (something on the path?)",
                extra={"fields": {"peer": self.peer_id, "addr": str(self.address)}},
            )
            return False
        return True

    async def _connect(self) -> PeerStream:
        t = self.transport
        stream = PeerStream()
        await asyncio.wait_for(
            self.loop.create_connection(lambda: stream, self.address.host, self.address.port),
            CONNECT_TIMEOUT,
        )
        try:
            if t.tls is not None:
                try:
                    await t.start_tls(stream, server_side=False, host=self.address.host)
                    check_identity(
                        stream.peer_certificate(),
                        cluster_id=t.cluster_id,
                        no_cluster=NO_CLUSTER,
                        expected=self.peer_id,
                    )
                except PeerRefused as e:
                    raise AuthError(str(e)) from e
            shook: Handshake = await asyncio.wait_for(
                dial_handshake(
                    stream.read_exactly,
                    stream.write,
                    self.transport.secret,
                    self.transport.node_id,
                    self.peer_id,
                    self.transport.cluster_id,
                    # Releases that spoke only the legacy hello had no peer TLS.
                    legacy=t.tls is None
                    and t.min_version <= LEGACY_VERSION
                    and self.legacy_until > time.monotonic()
                    and t.latest_versions.get(self.peer_id, 0) < MAC_VERSION,
                    min_version=t.min_version,
                ),
                HANDSHAKE_TIMEOUT,
            )
            self.version = shook.version
            # With peer TLS the frames are protected by TLS already: no MAC on top.
            if t.tls is None and shook.send_key is not None:
                self.sealer = RecordSealer(shook.send_key)
            self.transport.learn_cluster_id(shook.cluster_id)
        except LegacyListenerSuspected as e:
            stream.abort(None)
            if t.tls is None:
                raise
            # TLS 1.3: the listener verifies our certificate after our side of the handshake
            # ended, so its refusal shows here, as a close (or an alert) before its answer.
            cause = e.__cause__
            real = cause.real_error if isinstance(cause, StreamClosed) else cause
            reason, detail = classify(real)
            raise AuthError(
                f"{reason}: node {self.peer_id} closed the connection during the hello, it "
                f"refused this node's certificate (see its log): {detail}"
            ) from e
        except BaseException:
            stream.abort(None)
            raise
        return stream

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        if self.task is not None:
            self.task.cancel()


class _PeerListener:
    """Accepts peers' connections: TLS (with peer TLS), the hello, then frames to the node."""

    def __init__(self, transport: PeerTransport) -> None:
        self.transport = transport
        self.servers: list[asyncio.Server] = []
        self.streams: set[PeerStream] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def listen(self, sockets: list[socket.socket]) -> None:
        loop = asyncio.get_running_loop()
        for sock in sockets:
            self.servers.append(await loop.create_server(self._connection, sock=sock))

    def _connection(self) -> PeerStream:
        stream = _InboundStream(self)
        self.streams.add(stream)
        return stream

    def accepted(self, stream: PeerStream) -> None:
        task = asyncio.ensure_future(self._serve(stream))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def stop(self) -> None:
        for server in self.servers:
            server.close()
        for stream in list(self.streams):
            stream.abort(None)

    async def _serve(self, stream: PeerStream) -> None:
        t = self.transport
        peer = stream.transport.get_extra_info("peername") or ("?", 0)
        remote = f"{peer[0]}:{peer[1]}"
        try:
            try:
                cert_id = None
                if t.tls is not None:
                    await t.start_tls(stream, server_side=True)
                    cert_id = check_identity(
                        stream.peer_certificate(),
                        cluster_id=t.cluster_id,
                        no_cluster=NO_CLUSTER,
                        members=t.members() - {t.node_id},
                    )
                shook = await asyncio.wait_for(
                    accept_handshake(
                        stream.read_exactly,
                        stream.write,
                        t.secret,
                        t.node_id,
                        t.members(),
                        t.cluster_id,
                        dialer_id_must_be=cert_id,
                        min_version=t.min_version,
                    ),
                    HANDSHAKE_TIMEOUT,
                )
                peer_id, version = shook.peer_id, shook.version
                t.learn_cluster_id(shook.cluster_id)
            except (AuthError, TimeoutError, OSError, PeerRefused) as e:
                if isinstance(e, ProofFailed):
                    t.auth_failure(AUTH_BAD_PROOF)
                elif isinstance(e, VersionMismatch) and t.min_version > MIN_VERSION:
                    t.auth_failure(AUTH_OLD_PROTOCOL)
                fields = {"remote": remote, "reason": str(e) or repr(e)}
                if isinstance(e, IdentityMismatch):
                    fields = {**fields, "reason": str(Refusal.WRONG_ID), "detail": str(e)}
                elif t.tls is not None and not isinstance(e, AuthError):
                    reason, detail = classify(e)
                    fields = {**fields, "reason": str(reason), "detail": detail}
                log.warning("peer connection refused", extra={"fields": fields})
                if t.on_refused is not None:
                    t.on_refused()
                return
            log.debug("peer accepted", extra={"fields": {"peer": peer_id, "version": version}})
            t.versions_in[peer_id] = version
            t.latest_versions[peer_id] = version
            t.peer_dialed_in(peer_id, version)
            await self._receive(stream, peer_id, shook.receive_key if t.tls is None else None)
        finally:
            self.streams.discard(stream)
            stream.abort(None)

    async def _receive(self, stream: PeerStream, peer_id: int, key: bytes | None) -> None:
        """Deliver the stream's frames until it ends. ``key``: the frames come as records
        under that MAC key (protocol 8 on, without peer TLS)."""
        t = self.transport
        limit = t.max_frame_bytes
        opener = None if key is None else RecordOpener(key)
        if opener is not None:  # a record holds whole frames: up to RECORD_TARGET_BYTES, or one
            limit = max(limit, RECORD_TARGET_BYTES) + MESSAGE_FRAME_HEADER.size

        def plain(body: bytes) -> bool:
            return self._deliver(body, peer_id)

        def record(body: bytes) -> bool:
            assert opener is not None
            try:
                frames = opener.open(body)
            except FrameAuthError as e:
                log.warning(
                    "peer frame failed authentication; closing",
                    extra={"fields": {"peer": peer_id, "reason": str(e)}},
                )
                t.auth_failure(AUTH_BAD_FRAME_MAC)
                return False
            try:
                payloads = list(split_frames(frames))
            except ValueError as e:
                log.warning(
                    "bad peer frame; closing", extra={"fields": {"peer": peer_id, "error": str(e)}}
                )
                return False
            return all(self._deliver(payload, peer_id) for payload in payloads)

        if opener is None:
            stream.start_frames(plain, limit=limit, tag=0)
        else:
            stream.start_frames(record, limit=limit, tag=TAG_BYTES)
        await stream.closed
        if stream.oversized:
            log.warning(
                "peer frame too large; closing",
                extra={"fields": {"peer": peer_id, "bytes": stream.oversized, "max": limit}},
            )

    def _deliver(self, payload: bytes | memoryview, peer_id: int) -> bool:
        """Decode one frame's payload and hand it on; False: the stream must close."""
        t = self.transport
        try:
            msg = decode_message(payload)
        except CodecError as e:
            log.warning(
                "bad peer frame; closing", extra={"fields": {"peer": peer_id, "error": str(e)}}
            )
            return False
        if msg.frm != peer_id or msg.to != t.node_id:
            log.warning(
                "peer message with wrong addresses dropped",
                extra={"fields": {"peer": peer_id, "frm": msg.frm, "to": msg.to}},
            )
            return True
        t.last_heard[peer_id] = time.monotonic()
        t.on_message(msg)
        return True


class _InboundStream(PeerStream):
    """A connection a peer dialed: the listener serves it from ``connection_made``."""

    def __init__(self, listener: _PeerListener) -> None:
        super().__init__()
        self.listener = listener

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.listener.accepted(self)


class PeerTransport:
    """Sends messages to peers and hands received (authenticated) messages to the ``deliver``
    callback given to ``start`` (the ``MessageCarrier`` protocol)."""

    def __init__(
        self,
        node_id: int,
        listen: Address,
        peers: dict[int, Address],
        secret: bytes,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_queue_bytes: int = 64 << 20,
        on_refused: Callable[[], None] | None = None,
        on_auth_failure: Callable[[str], None] | None = None,
        tls: PeerTls | None = None,
        min_version: int = MIN_VERSION,
    ) -> None:
        self.node_id = node_id
        self.min_version = min_version
        """``peer_min_protocol``: older peer protocols are refused both ways."""
        self.on_auth_failure = on_auth_failure
        """Called with a reason (``AUTH_*``) for each failed proof or frame MAC and each peer
        refused for an older protocol than ``min_version``."""
        self.listen = listen
        self.tls = tls
        """Mutual TLS 1.3 under the hello (``peer_tls``); None: the hello over plain TCP."""
        self.secret = secret or (PEER_TLS_SECRET if tls is not None else secret)
        self.on_message: Deliver = _drop
        self.reachability: PeerReachability = _ignore
        self.on_refused = on_refused
        self.max_frame_bytes = max_frame_bytes
        self.max_queue_bytes = max_queue_bytes
        self.closed = False
        self.last_heard: dict[int, float] = {}
        self.versions_in: dict[int, int] = {}
        self.versions_out: dict[int, int] = {}
        """Each peer's protocol version on the latest stream it dialed to us / we dialed to it
        (``peer_version``)."""
        self.latest_versions: dict[int, int] = {}
        """Each peer's protocol version on the latest stream either way."""
        self._links: dict[int, _PeerLink] = {}
        self._listener = _PeerListener(self)
        self.cluster_id = NO_CLUSTER
        self._cluster_learned: Callable[[bytes], None] | None = None
        self._initial_peers = dict(peers)

    def set_cluster_id(self, cluster_id: bytes, learned: Callable[[bytes], None]) -> None:
        """This node's cluster id (``NO_CLUSTER`` while it has not joined one); ``learned`` is
        called once with the id an authenticated peer presented, when this node had none."""
        self.cluster_id = cluster_id
        self._cluster_learned = learned

    def learn_cluster_id(self, peer_cluster: bytes) -> None:
        if self.cluster_id == NO_CLUSTER and peer_cluster != NO_CLUSTER:
            self.cluster_id = peer_cluster
            if self._cluster_learned is not None:
                self._cluster_learned(peer_cluster)

    async def start_tls(self, stream: PeerStream, *, server_side: bool, host: str = "") -> None:
        """Put TLS under ``stream`` with the peer contexts in force now (a SIGHUP's reload
        applies to the next connection); raises ``PeerRefused`` with the reason (the stream
        is closed then)."""
        assert self.tls is not None
        ctx = self.tls.server if server_side else self.tls.client
        try:
            await stream.start_tls(
                ctx, server_side=server_side, host=host, timeout=HANDSHAKE_TIMEOUT
            )
        except StreamClosed as e:
            raise PeerRefused(*classify(e.real_error or e)) from e
        except TimeoutError as e:
            raise PeerRefused(Refusal.HANDSHAKE, "no TLS handshake in time") from e
        except OSError as e:  # ssl.SSLError is an OSError
            raise PeerRefused(*classify(e)) from e

    def auth_failure(self, reason: str) -> None:
        if self.on_auth_failure is not None:
            self.on_auth_failure(reason)

    def members(self) -> set[int]:
        return {self.node_id, *self._links}

    async def start(self, deliver: Deliver, reachability: PeerReachability | None = None) -> None:
        """Bind the listener and start dialing every peer; received messages go to ``deliver``,
        peers lost and reachable again to ``reachability``."""
        self.on_message = deliver
        if reachability is not None:
            self.reachability = reachability
        await self._listener.listen(_bind(self.listen))
        for pid, addr in self._initial_peers.items():
            self.add_peer(pid, addr)

    def add_peer(self, peer_id: int, address: Address) -> None:
        if peer_id == self.node_id:
            return
        old = self._links.get(peer_id)
        if old is not None:
            if old.address == address:
                return
            old.close()
        link = _PeerLink(self, peer_id, address)
        self._links[peer_id] = link
        link.task = asyncio.ensure_future(link.run())

    def remove_peer(self, peer_id: int) -> None:
        link = self._links.pop(peer_id, None)
        if link is not None:
            link.close()

    def send(self, messages: Iterable[Message]) -> None:
        """Queue messages for their peers; never blocks, drops when a peer is unreachable."""
        for m in messages:
            link = self._links.get(m.to)
            if link is not None:
                link.enqueue(encode_message(m))

    def connected(self, peer_id: int) -> bool:
        link = self._links.get(peer_id)
        return link is not None and link.connected

    def peer_version(self, peer_id: int) -> int:
        """The higher of the versions of the latest stream each way: a peer that dialed us
        negotiating 4 runs a release that speaks 4, even while our own link to it still uses
        the legacy hello (``LEGACY_RETRY_SECONDS`` after it last looked like an old release)."""
        return max(self.versions_in.get(peer_id, 0), self.versions_out.get(peer_id, 0))

    def peer_dialed_in(self, peer_id: int, version: int = MIN_VERSION) -> None:
        """An authenticated stream from ``peer_id`` arrived: it is up (a restarted node, say),
        so our link to it retries now instead of after a backoff of up to ``BACKOFF_MAX``; its
        answers (votes, for one) would be dropped until then. When it arrived at
        ``MAC_VERSION`` or later while our link to it runs an older version (the legacy hello,
        after a negotiating hello was closed unanswered: a peer that did not know us as a
        member yet, or something on the path), that link is closed and dialed again
        negotiating, so the frames to it get their MAC."""
        link = self._links.get(peer_id)
        if link is None:
            return
        if not link.connected:
            link.retry_now.set()
        elif self.tls is None and link.version < MAC_VERSION <= version:
            log.info(
                "peer speaks protocol 8 or later: dialing it again with a negotiating hello",
                extra={"fields": {"peer": peer_id, "was": link.version, "now": version}},
            )
            link.legacy_until = 0.0
            if link.stream is not None:
                link.stream.close()

    async def close(self) -> None:
        self.closed = True
        self._listener.stop()
        for link in self._links.values():
            link.close()
        tasks = [link.task for link in self._links.values() if link.task is not None]
        tasks += self._listener.tasks
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)


def _drop(message: Message) -> None:
    """Where messages go before ``start`` names a receiver: nowhere."""


def _ignore(peer_id: int, reachable: bool) -> None:
    """Where reachability changes go when ``start`` names no receiver: nowhere."""


def _refused(e: BaseException) -> bool:
    """Whether a connect failed because nothing listens there (TCP RST to our SYN). A name
    with several addresses that all refuse raises a plain ``OSError`` naming each: not
    counted, so such a peer's loss shows only as silence (an election timeout)."""
    return isinstance(e, ConnectionRefusedError)


def _bind(addr: Address) -> list[socket.socket]:
    return bind_sockets(addr.port, address=addr.host or None, reuse_port=False)
