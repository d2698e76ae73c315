"""The health listener's HTTP server: Tornado's own limits plus a connection cap.

Tornado bounds what one connection may send (``max_header_size``, ``max_body_size``) and how
long it may take (``idle_connection_timeout`` is also its header deadline: the time from waiting
for a request to the end of its headers, however slowly the bytes trickle in;
``body_timeout``). It has no cap on open connections, so ``HealthServer`` counts them in a
``ConnectionGate`` and answers one over the cap 503 with ``Retry-After``, as the client API does.
Oversized headers make Tornado close the connection without an answer (its behaviour); the
health endpoints take GET, HEAD and OPTIONS only, so no checker ever sends one.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream
from tornado.web import Application

from raftnode.defaults import Limits
from raftnode.http.connection_gate import ConnectionGate, Refusal

log = logging.getLogger(__name__)

HEALTH_MAX_BODY_BYTES = 4096
"""The health endpoints read no body; a request may carry a small one (an OPTIONS probe)."""
HEALTH_MAX_BUFFER_BYTES = 1 << 20
"""Bytes Tornado buffers per connection (its default is 100 MB)."""

_REFUSAL_BODY = b"too many open connections to the health listener; retry shortly\n"
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_REFUSAL_BODY), _REFUSAL_BODY)
)


class HealthServer(HTTPServer):
    """An ``HTTPServer`` that keeps at most ``gate``'s connections open."""

    def initialize(  # type: ignore[override]
        self,
        request_callback: Application,
        *,
        gate: ConnectionGate,
        count_refusal: Callable[[Refusal], None],
        **kwargs: Any,
    ) -> None:
        super().initialize(request_callback, **kwargs)
        self.gate = gate
        self._count_refusal = count_refusal
        self._hosts: dict[IOStream, str] = {}

    def handle_stream(self, stream: IOStream, address: tuple[Any, ...]) -> None:
        host = str(address[0]) if isinstance(address, tuple) and address else ""
        refused = self.gate.admit(host)
        if refused is not None:
            self._count_refusal(refused)
            stream.write(_REFUSAL).add_done_callback(lambda _: stream.close())
            return
        self._hosts[stream] = host
        super().handle_stream(stream, address)

    def on_close(self, server_conn: object) -> None:
        stream = getattr(server_conn, "stream", None)
        host = self._hosts.pop(stream, None) if stream is not None else None
        if host is not None:
            self.gate.release(host)
        super().on_close(server_conn)


def make_health_server(
    app: Application,
    limits: Limits,
    count_refusal: Callable[[Refusal], None],
    ssl_context: ssl.SSLContext | None = None,
) -> HealthServer:
    """The health listener's server with the ``limits:`` that apply to it (HTTPS when given
    a context)."""
    return HealthServer(
        app,
        gate=ConnectionGate(limits.max_health_connections, limits.max_connections_per_address),
        count_refusal=count_refusal,
        max_header_size=limits.max_header_bytes,
        max_body_size=HEALTH_MAX_BODY_BYTES,
        max_buffer_size=HEALTH_MAX_BUFFER_BYTES,
        idle_connection_timeout=limits.header_timeout_seconds,
        body_timeout=limits.header_timeout_seconds,
        ssl_options=ssl_context,
    )
