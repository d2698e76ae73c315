"""What TLS costs per request on the stack the nodes serve HTTPS with (uvloop's TLS over
OpenSSL), with nothing of raftnode around it: the floor under the TLS cost rows of
``make bench-peers``.

``python -m bench.tls_floor [--seconds S] [--rounds R] [--work N,N...] [--out DIR]``

A responder (this module with ``--serve``: a uvloop protocol that answers every request with
the same 200 JSON body) runs in plaintext and with TLS 1.3, alternating, under wrk at 64
connections sending kv.lua's reads. ``--work N`` makes each request first do N rounds of what a
node does for a read (an SQLite lookup by primary key and a JSON round trip), so that the
process's caches are as busy between two TLS records as a node's are; 0 is the bare stack.

Per run it reads the CPU time the responder and wrk used over the middle of the run
(``/proc/<pid>/stat``). It prints, per work level, the median over the rounds of: throughput,
CPU microseconds per request of the responder and of wrk, what TLS adds to each, and TLS's
throughput as a fraction of plaintext's. ``tls_floor.json`` and ``tls_floor.png`` go to
``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sqlite3
import ssl
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.deps import ensure_commands
from bench.plots import plot_tls_floor, save_results
from bench.procs import ProcessGroup, cpu_seconds, http_status, wait_until
from bench.wrkrun import run_wrk_sampled, wrk_argv
from raftnode.devcluster import free_ports

CONNECTIONS = 64
BODY = json.dumps({"key": "bench-0", "value": "x" * 100, "revision": 1}).encode()
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)
SIDES = ("plaintext", "tls")


# -- the responder ------------------------------------------------------------------------------


class _NodeLikeWork:
    """N rounds of a read's own work: an SQLite primary-key lookup and a JSON round trip."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.db = sqlite3.connect(":memory:")
        self.db.execute("CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB NOT NULL)")
        self.db.executemany(
            "INSERT INTO kv VALUES (?, ?)", ((f"k{i}".encode(), b"v" * 100) for i in range(10_000))
        )
        self.n = 0

    def run(self) -> None:
        for _ in range(self.rounds):
            self.n = (self.n + 37) % 10_000
            row = self.db.execute("SELECT value FROM kv WHERE key = ?", (f"k{self.n}".encode(),))
            value = row.fetchone()[0].decode()
            json.loads(json.dumps({"key": self.n, "value": value, "seen": list(range(20))}))


class _Responder(asyncio.Protocol):
    """Answers each request (a chunk that ends a header block: wrk's GETs have no body)."""

    def __init__(self, work: _NodeLikeWork) -> None:
        self.work = work
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if data.endswith(b"\r\n\r\n"):
            self.work.run()
            self.transport.write(RESPONSE)


def serve(port: int, work: int, cert: Path | None, key: Path | None) -> None:
    """Listen on 127.0.0.1:``port`` until killed (TLS when ``cert`` and ``key`` are given)."""
    import uvloop

    context = None
    if cert is not None and key is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
    node_like = _NodeLikeWork(work)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(lambda: _Responder(node_like), "127.0.0.1", port, ssl=context)
        await asyncio.Event().wait()

    uvloop.run(main())


# -- measuring ----------------------------------------------------------------------------------


def one_run(url: str, server_pid: int, seconds: float) -> dict[str, float]:
    """wrk against ``url``: ok/s, and the CPU microseconds per request of server and wrk over
    the middle 60% of the run."""
    argv = wrk_argv(
        url,
        connections=CONNECTIONS,
        seconds=seconds,
        script_args={"dialect": "raftnode", "mode": "read", "keys": "1000", "prefix": "bench-"},
        threads=1,
    )
    result, sample = run_wrk_sampled(
        argv, seconds, lambda wrk: {"server": cpu_seconds(server_pid), "wrk": cpu_seconds(wrk)}
    )
    ok_per_s = result.ok_per_s
    requests = ok_per_s * sample["elapsed"]
    return {
        "ok_per_s": ok_per_s,
        "server_us": sample["server"] / requests * 1e6,
        "wrk_us": sample["wrk"] / requests * 1e6,
    }


def summarize(runs: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Medians of each side's runs, what TLS adds per request, and the throughput ratio."""

    def med(side: str, name: str) -> float:
        return statistics.median(r[name] for r in runs[side])

    plain, tls = "plaintext", "tls"
    return {
        "plaintext_ok_per_s": med(plain, "ok_per_s"),
        "tls_ok_per_s": med(tls, "ok_per_s"),
        "plaintext_server_us": med(plain, "server_us"),
        "tls_server_us": med(tls, "server_us"),
        "plaintext_wrk_us": med(plain, "wrk_us"),
        "tls_wrk_us": med(tls, "wrk_us"),
        "tls_adds_server_us": med(tls, "server_us") - med(plain, "server_us"),
        "tls_adds_wrk_us": med(tls, "wrk_us") - med(plain, "wrk_us"),
        "ratio": med(tls, "ok_per_s") / med(plain, "ok_per_s"),
        "ratio_per_round": [
            round(t["ok_per_s"] / p["ok_per_s"], 3)
            for t, p in zip(runs[tls], runs[plain], strict=True)
        ],
    }


# -- the command --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0, help="per run (default 5)")
    p.add_argument("--rounds", type=int, default=3, help="plaintext/TLS pairs per level")
    p.add_argument(
        "--work",
        default="0,8",
        help="comma-separated node-like rounds per request, one level each (default 0,8)",
    )
    p.add_argument("--out", type=Path, default=Path("build/bench"))
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--cert", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--key", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        args.levels = [int(w) for w in str(args.work).split(",")]
    except ValueError:
        p.error(f"--work: comma-separated integers, not {args.work!r}")
    if any(level < 0 for level in args.levels) or args.rounds < 1 or args.seconds < 2:
        p.error("--work levels must be >= 0, --rounds >= 1 and --seconds >= 2")
    return args


def _answers(url: str) -> bool:
    return http_status(url) == 200


def measure_level(
    procs: ProcessGroup, work: int, args: argparse.Namespace, cert: Path, key: Path
) -> dict[str, Any]:
    """Both sides at one work level, alternating rounds; a fresh responder per run."""
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    for rnd in range(args.rounds):
        for side in SIDES:
            (port,) = free_ports(1)
            argv = [sys.executable, "-m", "bench.tls_floor", "--serve", "--port", str(port)]
            argv += ["--work", str(work)]
            if side == "tls":
                argv += ["--cert", str(cert), "--key", str(key)]
            server = procs.spawn(argv, args.out / "tls_floor-server.log")
            try:
                scheme = "https" if side == "tls" else "http"
                url = f"{scheme}://127.0.0.1:{port}/v1/kv/bench-0"
                wait_until("responder", functools.partial(_answers, url), 30.0)
                run = one_run(url, server.pid, args.seconds)
            finally:
                procs.stop(server)
            runs[side].append(run)
            print(
                f"  work {work} round {rnd + 1} {side:<9} {run['ok_per_s']:9,.0f} ok/s  "
                f"responder {run['server_us']:6.1f} us/req  wrk {run['wrk_us']:5.1f} us/req",
                flush=True,
            )
    return {"work": work, "runs": runs, **summarize(runs)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve(args.port, args.levels[0], args.cert, args.key)
        return 0
    ensure_commands(["wrk"])
    args.out.mkdir(parents=True, exist_ok=True)
    from bench.peers.tls import make_bench_tls, trust_in_process

    with tempfile.TemporaryDirectory(prefix="tls-floor-") as tmp, ProcessGroup() as procs:
        tls = make_bench_tls(Path(tmp), [1], [])
        trust_in_process(tls.ca_file)
        levels = [
            measure_level(procs, work, args, tls.cert("raftnode-1"), tls.key("raftnode-1"))
            for work in args.levels
        ]
    print("\nwork  plain ok/s  TLS ok/s  TLS/plain (rounds)        responder us/req    wrk us/req")
    for lv in levels:
        print(
            f"{lv['work']:>4}  {lv['plaintext_ok_per_s']:10,.0f}  {lv['tls_ok_per_s']:8,.0f}  "
            f"{lv['ratio']:.2f}x {tuple(lv['ratio_per_round'])!s:<16}  "
            f"{lv['plaintext_server_us']:5.1f} -> {lv['tls_server_us']:5.1f} "
            f"(+{lv['tls_adds_server_us']:.1f})  "
            f"{lv['plaintext_wrk_us']:4.1f} -> {lv['tls_wrk_us']:4.1f} "
            f"(+{lv['tls_adds_wrk_us']:.1f})"
        )
    result = {
        "connections": CONNECTIONS,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "openssl": ssl.OPENSSL_VERSION,
        "levels": levels,
    }
    save_results(args.out, "tls_floor", result, plot_tls_floor)
    return 0


if __name__ == "__main__":
    sys.exit(main())
