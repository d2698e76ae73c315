"""``raftnode.client``: use a raftnode cluster from Python, sync (``Client``) or asyncio
(``AsyncClient``), on the standard library alone.

    from raftnode.client import Client

    with Client(["http://10.0.0.1:8081", "http://10.0.0.2:8081", "http://10.0.0.3:8081"]) as kv:
        kv.put("config/feature", "on")
        print(kv.get("config/feature").value)

The client finds a node that answers, rides out elections and dead nodes with a bounded,
jittered backoff inside each call's deadline, and sends every write with an idempotency key so
that its retries apply it exactly once; ``watch`` follows changes across dead nodes, resuming
from the last revision it delivered; leases with a background keep-alive, and ``Lock`` and
``Election`` with fencing revisions, build coordination on top. See docs/client.md.
"""

from raftnode.client.async_client import AsyncClient
from raftnode.client.async_concurrency import AsyncElection, AsyncLock
from raftnode.client.async_lease import AsyncLease
from raftnode.client.async_watch import AsyncWatch
from raftnode.client.concurrency import AcquireTimeout, Election, LeaderInfo, Lock, LockLost
from raftnode.client.endpoints import ENDPOINTS_ENV, Endpoint, parse_endpoints, tls_context
from raftnode.client.errors import (
    BadRequest,
    ClientError,
    CompareFailed,
    DeadlineExceeded,
    IdempotencyKeyReused,
    LeaseExists,
    LeaseNotFound,
    NotFound,
    QuotaExceeded,
    ServerError,
    ServerRefusal,
    Unavailable,
)
from raftnode.client.lease import Lease
from raftnode.client.lease_ops import LeaseStatus
from raftnode.client.operations import UNSET, Count, KeyValue, Page, WriteResult
from raftnode.client.retry import RetryPolicy
from raftnode.client.sync_client import Client
from raftnode.client.txn import Compare, Txn, TxnOp, TxnResponse, TxnResult
from raftnode.client.watch import Watch
from raftnode.client.watch_events import WatchCompacted, WatchEvent
from raftnode.consistency import Consistency

__all__ = [
    "ENDPOINTS_ENV",
    "UNSET",
    "AcquireTimeout",
    "AsyncClient",
    "AsyncElection",
    "AsyncLease",
    "AsyncLock",
    "AsyncWatch",
    "BadRequest",
    "Client",
    "ClientError",
    "Compare",
    "CompareFailed",
    "Consistency",
    "Count",
    "DeadlineExceeded",
    "Election",
    "Endpoint",
    "IdempotencyKeyReused",
    "KeyValue",
    "LeaderInfo",
    "Lease",
    "LeaseExists",
    "LeaseNotFound",
    "LeaseStatus",
    "Lock",
    "LockLost",
    "NotFound",
    "Page",
    "QuotaExceeded",
    "RetryPolicy",
    "ServerError",
    "ServerRefusal",
    "Txn",
    "TxnOp",
    "TxnResponse",
    "TxnResult",
    "Unavailable",
    "Watch",
    "WatchCompacted",
    "WatchEvent",
    "WriteResult",
    "parse_endpoints",
    "tls_context",
]
