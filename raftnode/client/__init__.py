"""``raftnode.client``: use a raftnode cluster from Python, sync (``Client``) or asyncio
(``AsyncClient``), on the standard library alone.

    from raftnode.client import Client

    with Client(["http://10.0.0.1:8081", "http://10.0.0.2:8081", "http://10.0.0.3:8081"]) as kv:
        kv.put("config/feature", "on")
        print(kv.get("config/feature").value)

The client finds a node that answers, rides out elections and dead nodes with a bounded,
jittered backoff inside each call's deadline, and sends every write with an idempotency key so
that its retries apply it exactly once. See docs/client.md.
"""

from raftnode.client.async_client import AsyncClient
from raftnode.client.endpoints import ENDPOINTS_ENV, Endpoint, parse_endpoints, tls_context
from raftnode.client.errors import (
    BadRequest,
    ClientError,
    CompareFailed,
    DeadlineExceeded,
    IdempotencyKeyReused,
    NotFound,
    QuotaExceeded,
    ServerError,
    ServerRefusal,
    Unavailable,
)
from raftnode.client.operations import UNSET, KeyValue, Page, WriteResult
from raftnode.client.retry import RetryPolicy
from raftnode.client.sync_client import Client
from raftnode.consistency import Consistency

__all__ = [
    "ENDPOINTS_ENV",
    "UNSET",
    "AsyncClient",
    "BadRequest",
    "Client",
    "ClientError",
    "CompareFailed",
    "Consistency",
    "DeadlineExceeded",
    "Endpoint",
    "IdempotencyKeyReused",
    "KeyValue",
    "NotFound",
    "Page",
    "QuotaExceeded",
    "RetryPolicy",
    "ServerError",
    "ServerRefusal",
    "Unavailable",
    "WriteResult",
    "parse_endpoints",
    "tls_context",
]
