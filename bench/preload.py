"""Write keys prefix0 .. prefix(N-1) once, so read benchmarks only read keys that exist.

A few threads with one keep-alive connection each; every request bounded by a timeout.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit


def put_request(dialect: str, key: str, value: str) -> tuple[str, bytes]:
    """(path, JSON body) of one write in ``dialect`` (raftnode, pysyncobj or etcd)."""
    if dialect == "etcd":
        b64 = {
            "key": base64.b64encode(key.encode()).decode(),
            "value": base64.b64encode(value.encode()).decode(),
        }
        return "/v3/kv/put", json.dumps(b64).encode()
    return "/kv", json.dumps({"key": key, "value": value}).encode()


def open_connection(url: str, timeout: float) -> http.client.HTTPConnection:
    """A connection to ``url``'s host and port: HTTPS (verified against the default CAs, which
    ``bench.peers.tls.trust_in_process`` points at the benchmark's CA) or plain HTTP."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port
    if parts.scheme == "https":
        return http.client.HTTPSConnection(host, port, timeout=timeout)
    return http.client.HTTPConnection(host, port, timeout=timeout)


def write_one(url: str, dialect: str, key: str, value: str, timeout: float = 2.0) -> int:
    """One write; its status code (0 when nothing answered)."""
    conn = open_connection(url, timeout)
    path, body = put_request(dialect, key, value)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return int(resp.status)
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def _writer(url: str, dialect: str, keys: list[str], value: str, deadline: float) -> int:
    conn = open_connection(url, 10)
    failed = 0
    try:
        for key in keys:
            for _attempt in range(5):
                if time.monotonic() > deadline:
                    return failed + 1
                path, body = put_request(dialect, key, value)
                try:
                    conn.request("POST", path, body, {"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    resp.read()
                    if 200 <= resp.status < 300:
                        break
                except (OSError, http.client.HTTPException):
                    conn.close()
                time.sleep(0.05)
            else:
                failed += 1
    finally:
        conn.close()
    return failed


def preload(
    url: str,
    dialect: str,
    *,
    keys: int,
    prefix: str = "bench-",
    value_bytes: int = 100,
    workers: int = 16,
    timeout: float = 300.0,
) -> None:
    if not url.startswith(("http://127.0.0.1:", "https://127.0.0.1:")):
        raise ValueError(f"benchmarks only send traffic to 127.0.0.1, not {url}")
    value = "x" * value_bytes
    names = [f"{prefix}{i}" for i in range(keys)]
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(workers) as pool:
        shares = [names[i::workers] for i in range(workers)]
        failed = sum(pool.map(lambda s: _writer(url, dialect, s, value, deadline), shares))
    if failed:
        raise RuntimeError(f"preload of {url}: {failed} of {keys} keys not written")
