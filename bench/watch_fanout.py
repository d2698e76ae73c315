"""Watch fan-out: N watchers on one prefix, one writer at a fixed rate, delivery latency.

The watchers are spread over ``procs`` client processes (multiprocessing), each an asyncio loop
holding its share of the streams on raw sockets (raftnode: ``GET /watch?prefix=`` Server-Sent
Events; etcd: the gateway's streaming ``POST /v3/watch``). Once every stream is open (raftnode:
the answer's headers, sent after the watch is registered; etcd: its ``created`` message) a
writer process puts ``writes`` keys under the prefix at ``rate`` per second, paced, over a few
keep-alive connections to the leader; the value is the write's sequence number. The writer
records when each write was sent and acknowledged (``time.monotonic``, one clock for every
process on the machine) in shared arrays; each watcher records when each sequence number
reached it. Delivery latency is receipt minus acknowledgement (the issue's "commit to
receipt": the ack is the earliest the client knows of the commit; a watcher may beat the
writer's ack, so small negative values are real). Missed: writes a stream never saw.

Each client process also reports its CPU use (user+system over the run); near 100% means the
receiving side, not the server, sets the latency, and the result says so.
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing as mp
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.sharedctypes import SynchronizedArray
from typing import Any

SAMPLE_CAP = 200_000  # latencies a client process sends back (an even subsample past that)


@dataclass(slots=True)
class FanoutResult:
    watchers: int
    writes: int
    rate: float
    write_errors: int
    write_seconds: float
    deliveries: int
    missed: int
    duplicates: int
    p50_ms: float
    p99_ms: float
    p50_from_send_ms: float
    p99_from_send_ms: float
    client_cpu_pct: list[float] = field(default_factory=list)

    @property
    def achieved_rate(self) -> float:
        """Writes acknowledged per second, from the first write sent to the last acknowledged
        (the asked ``rate`` when the system kept up)."""
        return (self.writes - self.write_errors) / self.write_seconds if self.write_seconds else 0.0

    @property
    def client_saturated(self) -> bool:
        return any(c >= 85.0 for c in self.client_cpu_pct)

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["client_saturated"] = self.client_saturated
        d["achieved_rate"] = round(self.achieved_rate, 1)
        return d


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100.0 * (len(s) - 1))))]


def _host_port(url: str) -> tuple[str, int]:
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"benchmarks only send traffic to 127.0.0.1, not {url}")
    host, port = url[len("http://") :].rstrip("/").split(":")
    return host, int(port)


def _prefix_end(prefix: str) -> bytes:
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return bytes(raw)


def watch_request(dialect: str, prefix: str, host: str, port: int) -> bytes:
    if dialect == "etcd":
        body = json.dumps(
            {
                "create_request": {
                    "key": base64.b64encode(prefix.encode()).decode(),
                    "range_end": base64.b64encode(_prefix_end(prefix)).decode(),
                }
            }
        ).encode()
        head = (
            f"POST /v3/watch HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body
    return f"GET /watch?prefix={prefix} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()


def put_request(dialect: str, key: str, value: str, host: str, port: int) -> bytes:
    if dialect == "etcd":
        body = json.dumps(
            {
                "key": base64.b64encode(key.encode()).decode(),
                "value": base64.b64encode(value.encode()).decode(),
            }
        ).encode()
        path = "/v3/kv/put"
    else:
        body = json.dumps({"key": key, "value": value}).encode()
        path = "/kv"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_headers(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


async def _body_chunks(reader: asyncio.StreamReader, chunked: bool) -> Any:
    """The body as it arrives (chunked transfer decoding when the answer uses it)."""
    while True:
        if chunked:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                return
            data = await reader.readexactly(size)
            await reader.readexactly(2)
        else:
            data = await reader.read(65536)
            if not data:
                return
        yield data


def raftnode_seqs(buf: bytes) -> tuple[list[int], bytes]:
    """Sequence numbers of the complete ``put`` events in an SSE buffer, and the rest."""
    out: list[int] = []
    end = buf.rfind(b"\n\n")
    if end < 0:
        return out, buf
    for line in buf[:end].split(b"\n"):
        if line.startswith(b"data: ") and b'"value":"' in line:
            i = line.index(b'"value":"') + 9
            out.append(int(line[i : line.index(b'"', i)]))
    return out, buf[end + 2 :]


def etcd_seqs(buf: bytes) -> tuple[list[int], bytes, bool]:
    """Sequence numbers in the complete JSON lines of an etcd watch stream, the rest, and
    whether a ``created`` message was among them."""
    out: list[int] = []
    created = False
    end = buf.rfind(b"\n")
    if end < 0:
        return out, buf, created
    for line in buf[:end].split(b"\n"):
        if not line.strip():
            continue
        result = json.loads(line).get("result", {})
        created = created or bool(result.get("created"))
        for ev in result.get("events", ()):
            out.append(int(base64.b64decode(ev["kv"]["value"])))
    return out, buf[end + 1 :], created


class _Stream:
    __slots__ = ("dups", "seen")

    def __init__(self, writes: int) -> None:
        self.seen = bytearray(writes)
        self.dups = 0


async def _watch_one(
    dialect: str,
    url: str,
    prefix: str,
    stream: _Stream,
    ready: asyncio.Event,
    stop: asyncio.Event,
    seqs: list[int],
    times: list[float],
) -> None:
    host, port = _host_port(url)
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    try:
        writer.write(watch_request(dialect, prefix, host, port))
        status, headers = await _read_headers(reader)
        if status != 200:
            raise RuntimeError(f"{dialect} watch: HTTP {status}")
        chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        if dialect != "etcd":
            ready.set()
        buf = b""
        chunks = _body_chunks(reader, chunked)
        while not stop.is_set():
            data = await anext(chunks, None)
            if data is None:
                return
            now = time.monotonic()
            buf += data
            if dialect == "etcd":
                got, buf, created = etcd_seqs(buf)
                if created:
                    ready.set()
            else:
                got, buf = raftnode_seqs(buf)
            for s in got:
                if stream.seen[s]:
                    stream.dups += 1
                    continue
                stream.seen[s] = 1
                seqs.append(s)
                times.append(now)
    finally:
        writer.close()


def client_process(
    dialect: str,
    urls: list[str],
    prefix: str,
    n_streams: int,
    writes: int,
    opened: Any,
    go: Any,
    done: Any,
    grace: float,
    ack: SynchronizedArray[float],
    sent: SynchronizedArray[float],
    out: Any,
) -> None:
    """One client process: ``n_streams`` watches round-robin over ``urls``."""

    async def main() -> dict[str, Any]:
        streams = [_Stream(writes) for _ in range(n_streams)]
        readies = [asyncio.Event() for _ in range(n_streams)]
        stop = asyncio.Event()
        seqs: list[int] = []
        times: list[float] = []
        tasks = [
            asyncio.create_task(
                _watch_one(
                    dialect, urls[i % len(urls)], prefix, streams[i], readies[i], stop, seqs, times
                )
            )
            for i in range(n_streams)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60.0)
        opened.release()
        while not go.is_set():
            await asyncio.sleep(0.05)
        cpu0 = os.times()
        wall0 = time.monotonic()
        # Wait for the writer to finish, then up to ``grace`` s for the stragglers.
        while not done.is_set():
            await asyncio.sleep(0.05)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and len(seqs) < n_streams * writes:
            await asyncio.sleep(0.05)
        cpu1 = os.times()
        wall = time.monotonic() - wall0
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        acks = ack[:]
        sends = sent[:]
        step = max(1, len(seqs) // SAMPLE_CAP)
        lat = [(times[i] - acks[seqs[i]]) * 1000.0 for i in range(0, len(seqs), step)]
        lat_send = [(times[i] - sends[seqs[i]]) * 1000.0 for i in range(0, len(seqs), step)]
        expected = sum(1 for a in acks if a > 0)
        missed = sum(
            sum(1 for s in range(writes) if acks[s] > 0 and not st.seen[s]) for st in streams
        )
        cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        return {
            "deliveries": len(seqs),
            "expected": expected * n_streams,
            "missed": missed,
            "dups": sum(st.dups for st in streams),
            "lat": lat,
            "lat_send": lat_send,
            "cpu_pct": 100.0 * cpu / wall if wall > 0 else 0.0,
        }

    try:
        out.put(asyncio.run(main()))
    except Exception as e:  # reported to the parent, which fails the run
        opened.release()
        out.put({"error": f"{type(e).__name__}: {e}"})


def writer_process(
    dialect: str,
    url: str,
    prefix: str,
    writes: int,
    rate: float,
    connections: int,
    ack: SynchronizedArray[float],
    sent: SynchronizedArray[float],
    out: Any,
) -> None:
    """Puts ``prefix``k<seq % 100> = "<seq>" at ``rate``/s over ``connections`` connections."""

    async def main() -> dict[str, Any]:
        host, port = _host_port(url)
        pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        for _ in range(connections):
            pool.put_nowait(await asyncio.open_connection(host, port))
        errors = 0

        async def put(seq: int) -> None:
            nonlocal errors
            reader, w = await pool.get()
            try:
                sent[seq] = time.monotonic()
                w.write(put_request(dialect, f"{prefix}k{seq % 100}", str(seq), host, port))
                status, headers = await _read_headers(reader)
                await reader.readexactly(int(headers.get("content-length", "0")))
                if status == 200:
                    ack[seq] = time.monotonic()
                else:
                    errors += 1
            finally:
                pool.put_nowait((reader, w))

        start = time.monotonic()
        pending = []
        for seq in range(writes):
            delay = start + seq / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(put(seq)))
        results = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 60)
        errors += sum(1 for r in results if isinstance(r, BaseException))
        return {"errors": errors, "seconds": time.monotonic() - start}

    try:
        out.put(asyncio.run(main()))
    except Exception as e:
        out.put({"error": f"{type(e).__name__}: {e}"})


def run_fanout(
    dialect: str,
    watch_urls: list[str],
    write_url: str,
    *,
    watchers: int,
    rate: float,
    seconds: float,
    procs: int = 4,
    writer_connections: int = 8,
    grace: float = 10.0,
    prefix: str | None = None,
) -> FanoutResult:
    """One fan-out run; raises RuntimeError when a client or the writer failed."""
    writes = max(1, round(rate * seconds))
    prefix = prefix or f"wf{os.getpid()}-{time.monotonic_ns()}/"
    ctx = mp.get_context("fork")
    ack = ctx.Array("d", writes, lock=False)
    sent = ctx.Array("d", writes, lock=False)
    opened = ctx.Semaphore(0)
    go, done = ctx.Event(), ctx.Event()
    out: Any = ctx.Queue()
    shares = [watchers // procs + (1 if i < watchers % procs else 0) for i in range(procs)]
    shares = [s for s in shares if s > 0]
    clients = [
        ctx.Process(
            target=client_process,
            args=(dialect, watch_urls, prefix, s, writes, opened, go, done, grace, ack, sent, out),
            daemon=True,
        )
        for s in shares
    ]
    wq: Any = ctx.Queue()
    writer = ctx.Process(
        target=writer_process,
        args=(dialect, write_url, prefix, writes, rate, writer_connections, ack, sent, wq),
        daemon=True,
    )
    try:
        for c in clients:
            c.start()
        for _ in clients:
            if not opened.acquire(timeout=90.0):
                raise RuntimeError(f"{dialect}: the watch streams did not open within 90 s")
        go.set()
        writer.start()
        wres = wq.get(timeout=seconds + 90.0)
        done.set()
        parts = [out.get(timeout=grace + 90.0) for _ in clients]
    finally:
        done.set()
        for p in [*clients, writer]:
            p.join(timeout=10.0)
            if p.is_alive():
                p.kill()
                p.join(timeout=5.0)
    errors = [p["error"] for p in [wres, *parts] if "error" in p]
    if errors:
        raise RuntimeError(f"{dialect} fan-out: {'; '.join(errors)}")
    lat = [x for p in parts for x in p["lat"]]
    lat_send = [x for p in parts for x in p["lat_send"]]
    return FanoutResult(
        watchers=sum(shares),
        writes=writes,
        rate=rate,
        write_errors=int(wres["errors"]),
        write_seconds=round(float(wres["seconds"]), 3),
        deliveries=sum(int(p["deliveries"]) for p in parts),
        missed=sum(int(p["missed"]) for p in parts),
        duplicates=sum(int(p["dups"]) for p in parts),
        p50_ms=round(percentile(lat, 50), 3),
        p99_ms=round(percentile(lat, 99), 3),
        p50_from_send_ms=round(percentile(lat_send, 50), 3),
        p99_from_send_ms=round(percentile(lat_send, 99), 3),
        client_cpu_pct=[round(float(p["cpu_pct"]), 1) for p in parts],
    )


def median_or_zero(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0
