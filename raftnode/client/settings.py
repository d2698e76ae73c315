"""What ``Client`` and ``AsyncClient`` are configured with, checked once at construction."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from raftnode import __version__
from raftnode.client.endpoints import Endpoint, parse_endpoints, tls_context
from raftnode.client.operations import IDEMPOTENCY_HEADER, Call
from raftnode.client.retry import RetryPolicy

USER_AGENT = f"raftnode-client/{__version__}"


@dataclass(frozen=True, slots=True)
class ClientSettings:
    endpoints: list[Endpoint]
    policy: RetryPolicy
    ssl_context: ssl.SSLContext | None
    base_headers: dict[str, str]

    @classmethod
    def build(
        cls,
        endpoints: str | Sequence[str] | None,
        *,
        timeout: float | None,
        attempt_timeout: float | None,
        retry: RetryPolicy | None,
        token: str | None,
        ca_file: str | None,
        cert_file: str | None,
        key_file: str | None,
        ssl_context: ssl.SSLContext | None,
    ) -> ClientSettings:
        policy = retry or RetryPolicy()
        if timeout is not None:
            policy = dataclasses.replace(policy, timeout=timeout)
        if attempt_timeout is not None:
            policy = dataclasses.replace(policy, attempt_timeout=attempt_timeout)
        if ssl_context is not None and (ca_file or cert_file or key_file):
            raise ValueError("pass either ssl_context or ca_file/cert_file/key_file, not both")
        if ssl_context is None and (ca_file or cert_file or key_file):
            ssl_context = tls_context(ca_file, cert_file, key_file)
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if token is not None:
            if not token or any(c in token for c in "\r\n"):
                raise ValueError("the bearer token must be non-empty, on one line")
            headers["Authorization"] = f"Bearer {token}"
        return cls(parse_endpoints(endpoints), policy, ssl_context, headers)

    def policy_for(self, timeout: float | None) -> RetryPolicy:
        """The policy of one call; ``timeout`` overrides the whole call's deadline."""
        if timeout is None:
            return self.policy
        return dataclasses.replace(self.policy, timeout=timeout)

    def headers(self, call: Call) -> dict[str, str]:
        headers = dict(self.base_headers)
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        if call.idempotency_key is not None:
            headers[IDEMPOTENCY_HEADER] = call.idempotency_key
        return headers
