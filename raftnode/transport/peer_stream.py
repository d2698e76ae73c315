"""One peer connection as an ``asyncio.Protocol``: exact reads for the hello, then frames
parsed straight from ``data_received``.

The hello (``raftnode.transport.auth``) needs "read exactly n bytes" and "write, then wait
until the socket took it"; ``read_exactly`` and ``write`` give it that. Once the hello is done
the connection switches mode: a listener's connection hands every complete frame (or record)
to a callback from inside ``data_received``, with no coroutine, future or task per frame; a
dialer's connection carries nothing inbound, so any byte closes it. Writes after the hello are
``send`` calls (the link batches them); when the socket's buffer passes its high-water mark
``writable`` is False until it drains, and a connection that stays unwritable for
``WRITE_TIMEOUT`` seconds is aborted, so a stalled peer cannot hold memory or a link for ever.

TLS runs inside the protocol, over ``ssl.MemoryBIO`` pairs (what asyncio's own TLS transport
does), rather than through ``loop.start_tls``: a listener's TLS must start from the very first
byte, and with ``start_tls`` (awaited in a task) a dialer's ClientHello can arrive in
``data_received`` before the task runs, leaving both handshakes waiting for each other; and
``create_server(ssl=...)`` drops a failed handshake silently, while a refused peer must be
logged with its reason. Here a handshake error is raised to the caller as OpenSSL reported it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import Any

from raftnode.transport.codec import MESSAGE_FRAME_HEADER

WRITE_TIMEOUT = 5.0
"""Seconds a connection may stay above its write buffer's high-water mark before it is aborted."""
HANDSHAKE_BUFFER_BYTES = 64 << 10
"""Inbound bytes held before the hello consumes them; above it reading pauses."""
WRITE_BUFFER_HIGH = 4 << 20
"""The socket's write buffer above which a link stops flushing (``writable`` False)."""

TLS_READ_BYTES = 256 << 10
"""The most plaintext taken out of the TLS object per read call."""

FrameSink = Callable[[bytes], bool]
"""Called with each complete frame body (or record, with its tag); False closes the stream."""


class StreamClosed(ConnectionError):
    """The connection ended; ``real_error`` is why (None: a clean close by the other side)."""

    def __init__(self, real_error: BaseException | None) -> None:
        super().__init__(str(real_error) if real_error else "connection closed")
        self.real_error = real_error


class _Tls:
    """One side of a TLS session over memory BIOs: ciphertext in from the socket, out to it."""

    def __init__(self, context: ssl.SSLContext, *, server_side: bool, host: str | None) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.session = context.wrap_bio(
            self.incoming,
            self.outgoing,
            server_side=server_side,
            server_hostname=None if server_side else host,
        )
        self.established = False


class PeerStream(asyncio.Protocol):
    """A peer connection: the hello's exact reads and writes, then frames or write-only."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: Any = None
        """The transport in force (a TLS one after ``start_tls``); uvloop's transports are
        not ``asyncio.Transport`` subclasses, hence ``Any``."""
        self.closed: asyncio.Future[BaseException | None] = self.loop.create_future()
        """Done when the connection ended, with why (None: a clean close)."""
        self.error: BaseException | None = None
        self.writable = True
        self.on_writable: Callable[[], None] | None = None
        """Called when the write buffer drained below its low-water mark."""
        self._buffer = bytearray()
        self._wanted = 0
        self._reader: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._stall: asyncio.TimerHandle | None = None
        self._sink: FrameSink | None = None
        self._limit = 0
        self._tag = 0
        self._write_only = False
        self._reading_paused = False
        self._tls: _Tls | None = None
        self._handshake: asyncio.Future[None] | None = None
        self.oversized = 0
        """The length a frame header announced above the limit (0: none), which closed the
        stream."""

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport  # TCP_NODELAY: asyncio and uvloop set it on TCP transports
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)

    def data_received(self, data: bytes) -> None:
        if self._tls is None:
            self._plaintext_received(data)
        else:
            self._ciphertext_received(data)

    def _plaintext_received(self, data: bytes) -> None:
        if self._write_only:
            self.abort(StreamClosed(ConnectionError("the peer wrote after the hello")))
            return
        self._buffer += data
        if self._sink is not None:
            self._drain_frames()
            return
        reader = self._reader
        if reader is not None and len(self._buffer) >= self._wanted and not reader.done():
            reader.set_result(None)
        if len(self._buffer) > HANDSHAKE_BUFFER_BYTES and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        return False  # close our side too: peers never half-close

    def connection_lost(self, exc: Exception | None) -> None:
        if self.error is None:
            self.error = exc
        if self._stall is not None:
            self._stall.cancel()
        for waiter in (self._reader, self._drained, self._handshake):
            if waiter is not None and not waiter.done():
                waiter.set_exception(StreamClosed(self.error))
        if not self.closed.done():
            self.closed.set_result(self.error)

    def pause_writing(self) -> None:
        self.writable = False
        self._stall = self.loop.call_later(WRITE_TIMEOUT, self._stalled)

    def resume_writing(self) -> None:
        self.writable = True
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if self.on_writable is not None:
            self.on_writable()

    # -- the hello --------------------------------------------------------------------------

    async def read_exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            if self.closed.done():
                raise StreamClosed(self.error)
            self._wanted = n
            self._reader = self.loop.create_future()
            if self._reading_paused:
                self._reading_paused = False
                self.transport.resume_reading()
            try:
                await self._reader
            finally:
                self._reader = None
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def write(self, data: bytes) -> None:
        """Send and wait until the socket's buffer is below its high-water mark."""
        if self.closed.done():
            raise StreamClosed(self.error)
        self.send(data)
        if not self.writable:
            self._drained = self.loop.create_future()
            try:
                await self._drained
            finally:
                self._drained = None

    def send(self, data: bytes) -> None:
        """Send ``data`` (through TLS when it is on); never blocks."""
        tls = self._tls
        if tls is None:
            self.transport.write(data)
            return
        view = memoryview(data)
        try:
            while view:
                view = view[tls.session.write(view) :]
        except ssl.SSLError as e:
            self.abort(e)
            return
        self._flush_tls()

    async def start_tls(
        self, context: ssl.SSLContext, *, server_side: bool, host: str | None, timeout: float
    ) -> None:
        """Run a TLS handshake on this connection (before anything else was sent on it);
        raises OpenSSL's error, ``StreamClosed`` or ``TimeoutError`` (and closes the
        connection then)."""
        if self.closed.done():
            raise StreamClosed(self.error)
        self._tls = _Tls(context, server_side=server_side, host=host)
        self._handshake = self.loop.create_future()
        early, self._buffer = bytes(self._buffer), bytearray()
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()
        if early:  # the dialer's first flight, received before this call
            self._tls.incoming.write(early)
        self._step_handshake()
        try:
            await asyncio.wait_for(self._handshake, timeout)
        except TimeoutError:
            self.abort(TimeoutError("no TLS handshake in time"))
            raise
        except BaseException as e:
            self.abort(e)
            raise
        finally:
            self._handshake = None

    def _step_handshake(self) -> None:
        tls, waiter = self._tls, self._handshake
        assert tls is not None
        try:
            tls.session.do_handshake()
        except ssl.SSLWantReadError:
            self._flush_tls()
            return
        except (ssl.SSLError, ssl.CertificateError) as e:
            self._flush_tls()  # the alert that tells the other side why
            if waiter is not None and not waiter.done():
                waiter.set_exception(e)
            return
        tls.established = True
        self._flush_tls()
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._decrypt()  # application data that came with the last handshake flight

    def _ciphertext_received(self, data: bytes) -> None:
        tls = self._tls
        assert tls is not None
        tls.incoming.write(data)
        if tls.established:
            self._decrypt()
        else:
            self._step_handshake()

    def _decrypt(self) -> None:
        tls = self._tls
        assert tls is not None
        session, incoming = tls.session, tls.incoming
        plaintext: list[bytes] = []
        ended: BaseException | None = None
        try:
            # Read while a record (or decrypted data) is left: asking once more only to be
            # told SSLWantReadError costs more than the read. A partial record still ends
            # that way.
            while incoming.pending or session.pending():
                chunk = session.read(TLS_READ_BYTES)
                if not chunk:  # ssl reads the other side's close_notify as the end: b""
                    ended = StreamClosed(None)
                    break
                plaintext.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            ended = StreamClosed(None)  # the other side's close_notify
        except ssl.SSLError as e:
            ended = e
        self._flush_tls()  # post-handshake messages (TLS 1.3 key updates) may need answers
        for chunk in plaintext:
            if self.closed.done() or self.transport.is_closing():
                return
            self._plaintext_received(chunk)
        if ended is not None:
            self.abort(ended if isinstance(ended, ssl.SSLError) else None)

    def _flush_tls(self) -> None:
        tls = self._tls
        assert tls is not None
        if tls.outgoing.pending and not self.transport.is_closing():
            self.transport.write(tls.outgoing.read())

    def peer_certificate(self) -> dict[str, Any] | None:
        if self._tls is None or not self._tls.established:
            return None
        cert = self._tls.session.getpeercert()
        return cert if isinstance(cert, dict) and cert else None

    # -- after the hello ----------------------------------------------------------------------

    def start_frames(self, sink: FrameSink, *, limit: int, tag: int) -> None:
        """From now on hand every frame body of at most ``limit`` bytes (plus ``tag`` bytes
        of MAC) to ``sink``, including any already received; a larger header closes the
        stream (``oversized`` says what it announced)."""
        self._sink, self._limit, self._tag = sink, limit, tag
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()
        self._drain_frames()

    def write_only(self) -> None:
        """From now on any byte received closes the stream: the listener never writes after
        the hello, so it is garbage (or an attack)."""
        self._write_only = True
        if self._buffer:
            self.abort(StreamClosed(ConnectionError("the peer wrote after the hello")))

    def _drain_frames(self) -> None:
        buf, sink = self._buffer, self._sink
        assert sink is not None
        size, unpack, extra = MESSAGE_FRAME_HEADER.size, MESSAGE_FRAME_HEADER.unpack_from, self._tag
        pos, end = 0, len(buf)
        while end - pos >= size:
            (length,) = unpack(buf, pos)
            if length > self._limit:
                self.oversized = length
                del buf[:]
                self.abort(None)
                return
            stop = pos + size + length + extra
            if stop > end:
                break
            body = bytes(buf[pos + size : stop])
            pos = stop
            if not sink(body):
                del buf[:]
                self.abort(None)
                return
            if self.closed.done() or self._sink is None:
                return
        del buf[:pos]

    # -- ending ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close gracefully (flush what was written; TLS sends its close_notify)."""
        if self.transport is None or self.transport.is_closing():
            return
        tls = self._tls
        if tls is not None and tls.established:
            with contextlib.suppress(ssl.SSLError):
                tls.session.unwrap()  # queues close_notify; the answer is not awaited
            self._flush_tls()
        self.transport.close()

    def abort(self, error: BaseException | None) -> None:
        """Drop the connection now, remembering ``error`` as why."""
        if self.error is None:
            self.error = error
        self._sink = None
        if self.transport is not None:
            self.transport.abort()

    def _stalled(self) -> None:
        self._stall = None
        self.abort(TimeoutError(f"the peer took nothing for {WRITE_TIMEOUT:.0f} s"))
