"""Forwarding a write that reached a follower to the leader's client API.

The forwarded request carries ``X-Raftnode-Hops`` so a chain of stale leader views ends after
``MAX_HOPS``. A connection that could not be opened sent nothing, so the caller may retry; any
failure after the request went out means its outcome is unknown (504).
"""

from __future__ import annotations

from dataclasses import dataclass

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.simple_httpclient import HTTPTimeoutError

HOPS_HEADER = "X-Raftnode-Hops"
MAX_HOPS = 2
IDEMPOTENCY_HEADER = "Idempotency-Key"
"""A client's key for one logical write: retries with the same key apply it at most once."""
REPLAYED_HEADER = "Idempotent-Replayed"
"""Set to ``true`` on the answer to a retry: the write had applied before, this is its outcome."""
_RELAYED_HEADERS = (
    "Content-Type",
    "Retry-After",
    "X-Raftnode-Revision",
    "X-Raftnode-Node",
    REPLAYED_HEADER,
)


class ForwardNotSent(Exception):
    """The leader could not be reached: the request was not sent (safe to retry)."""


class ForwardUnknown(Exception):
    """The request may have reached the leader but no answer came back."""


@dataclass(frozen=True, slots=True)
class ForwardedResponse:
    status: int
    body: bytes
    headers: dict[str, str]


async def forward(
    url: str,
    method: str,
    body: bytes | None,
    hops: int,
    timeout: float,
    idempotency_key: str | None = None,
) -> ForwardedResponse:
    headers = {"Content-Type": "application/json", HOPS_HEADER: str(hops + 1)}
    if idempotency_key is not None:
        headers[IDEMPOTENCY_HEADER] = idempotency_key
    request = HTTPRequest(
        url,
        method=method,
        body=body if body else (b"" if method in ("POST", "PUT") else None),
        headers=headers,
        connect_timeout=min(1.0, timeout),
        request_timeout=timeout,
        allow_nonstandard_methods=True,
        follow_redirects=False,
    )
    try:
        resp = await AsyncHTTPClient().fetch(request, raise_error=False)
    except ConnectionRefusedError as e:
        raise ForwardNotSent(str(e)) from e
    except HTTPTimeoutError as e:
        if "connect" in str(e).lower():
            raise ForwardNotSent(str(e)) from e
        raise ForwardUnknown(str(e)) from e
    except (OSError, HTTPClientError) as e:
        raise ForwardUnknown(str(e)) from e
    if resp.code == 599:
        err = resp.error
        if isinstance(err, ConnectionRefusedError) or "connect" in str(err).lower():
            raise ForwardNotSent(str(err))
        raise ForwardUnknown(str(err))
    headers = {h: resp.headers[h] for h in _RELAYED_HEADERS if h in resp.headers}
    return ForwardedResponse(resp.code, resp.body or b"", headers)
