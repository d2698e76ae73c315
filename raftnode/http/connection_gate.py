"""How many connections a listener holds open, in all and per source address.

Consul's ``http_max_conns_per_client`` and HAProxy's ``maxconn`` are the models: past either
cap, a new connection is answered 503 with ``Retry-After`` and closed at once, so one client (or
a flood of them) cannot take every descriptor the process has. Both listeners use one gate each;
the gate only counts, the listener writes the refusal.
"""

from __future__ import annotations

from enum import StrEnum


class Refusal(StrEnum):
    """Why the connection layer refused a connection or a request: the metric's ``reason``."""

    MAX_CONNECTIONS = "max_connections"
    MAX_CONNECTIONS_PER_ADDRESS = "max_connections_per_address"
    HEADERS_TOO_LARGE = "headers_too_large"
    HEADER_TIMEOUT = "header_timeout"
    BODY_TIMEOUT = "body_timeout"
    BODY_TOO_LARGE = "body_too_large"
    MALFORMED = "malformed"


class ConnectionGate:
    """Counts open connections; ``admit`` says whether one more may stay open."""

    def __init__(self, max_connections: int, max_per_address: int) -> None:
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self._open = 0
        self._per_address: dict[str, int] = {}

    @property
    def open_connections(self) -> int:
        return self._open

    def open_from(self, address: str) -> int:
        return self._per_address.get(address, 0)

    def admit(self, address: str) -> Refusal | None:
        """Count a new connection from ``address`` and return None, or return why it may not
        stay open (and count nothing)."""
        if self._open >= self.max_connections:
            return Refusal.MAX_CONNECTIONS
        held = self._per_address.get(address, 0)
        if held >= self.max_per_address:
            return Refusal.MAX_CONNECTIONS_PER_ADDRESS
        self._open += 1
        self._per_address[address] = held + 1
        return None

    def release(self, address: str) -> None:
        """An admitted connection from ``address`` closed."""
        held = self._per_address.get(address, 0)
        if held <= 0:
            return
        self._open -= 1
        if held == 1:
            del self._per_address[address]
        else:
            self._per_address[address] = held - 1
