"""What idle and slowloris connections cost one node, and what they cost everyone else.

One local node (a one-member cluster on loopback, the default ``limits:``) is measured twice per
run: a well-behaved keep-alive client alone (``GET /kv/sentinel`` back to back for
``--seconds``), then the same client while an attacker process holds ``--idle`` idle and
``--slowloris`` slowloris connections (one header byte every ``--trickle`` seconds; each is
dropped by the node's header deadline and reopened at once, so the count stays up). Each phase
records the client's p50/p99 and the node's RSS and open descriptors (from /proc). The figures
are the median of ``--runs`` fresh runs, with their spread.

The per-address cap (``limits.max_connections_per_address``, 1024) counts source addresses: the
attacker spreads its connections over loopback sources 127.0.1.x (idle) and 127.0.2.x
(slowloris), 250 per address, so the node's default caps admit all of them; the client
connects from 127.0.0.1. Both processes raise their own RLIMIT_NOFILE; so does the node.

    python -m bench.connection_load --idle 5000 --slowloris 500 --runs 3 --out build/bench
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing
import os
import resource
import selectors
import socket
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.procs import ProcessGroup, install_sigterm, rss_bytes, wait_until
from raftnode import devcluster

PER_SOURCE = 250
"""Connections per loopback source address: under the default per-address cap of 256."""
SLOWLORIS_HEAD = b"GET /kv/sentinel HTTP/1.1\r\nHost: bench\r\nX-Slow: "
ATTACK_LIMIT_SECONDS = 600.0
"""The attacker process stops by itself after this long, whatever happens to its parent."""


def raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} < {needed} needed: raise it")


def source_address(block: int, index: int) -> str:
    return f"127.0.{block}.{1 + index // PER_SOURCE}"


def open_from(source: str, port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(5.0)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


def attack(port: int, idle: int, slowloris: int, trickle: float, pipe: Connection) -> None:
    """The attacker process: hold ``idle`` idle connections and keep ``slowloris`` trickling
    ones open (reopening each the node drops) until told to stop; then report counts."""
    raise_nofile(idle + slowloris + 256)
    started = time.monotonic()
    idle_socks = [open_from(source_address(1, i), port) for i in range(idle)]
    slow: dict[int, socket.socket] = {}
    drops = 0
    refusals_408 = 0

    def open_slow(i: int) -> None:
        sock = open_from(source_address(2, i), port)
        sock.send(SLOWLORIS_HEAD)
        slow[i] = sock

    for i in range(slowloris):
        open_slow(i)
    pipe.send({"ready": True, "open_seconds": time.monotonic() - started})
    next_byte = time.monotonic()
    while time.monotonic() - started < ATTACK_LIMIT_SECONDS:
        if pipe.poll(0.05):
            pipe.recv()
            break
        if time.monotonic() < next_byte:
            continue
        next_byte += trickle
        for i, sock in list(slow.items()):
            try:
                answer = sock.recv(4096)
            except BlockingIOError:
                answer = None
            except OSError:
                answer = b""
            if answer is None:
                with contextlib.suppress(OSError):
                    sock.send(b"s")
                continue
            refusals_408 += answer.startswith(b"HTTP/1.1 408")
            drops += 1
            sock.close()
            open_slow(i)
    idle_closed = count_closed(idle_socks)
    pipe.send({"slowloris_drops": drops, "slowloris_408": refusals_408, "idle_closed": idle_closed})
    for sock in idle_socks + list(slow.values()):
        sock.close()


def count_closed(socks: list[socket.socket]) -> int:
    """Idle sockets the node closed (readable: EOF or reset)."""
    selector = selectors.DefaultSelector()
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    closed = len(selector.select(timeout=0.1))
    selector.close()
    return closed


def open_descriptors(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def client_latencies(port: int, seconds: float) -> list[float]:
    """A well-behaved keep-alive client: GET back to back for ``seconds`` (from 127.0.0.1)."""
    conn = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=10, source_address=("127.0.0.1", 0)
    )
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            conn.request("GET", "/kv/sentinel")
            response = conn.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            conn.close()
        if ok:
            latencies.append(time.perf_counter() - started)
        else:
            errors += 1
    conn.close()
    if errors:
        raise RuntimeError(f"the well-behaved client got {errors} errors")
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(port: int, pid: int, seconds: float) -> dict[str, float]:
    latencies = client_latencies(port, seconds)
    return {
        "requests": len(latencies),
        "p50_ms": 1000 * percentile(latencies, 0.50),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "rss_mb": rss_bytes(pid) / 2**20,
        "fds": open_descriptors(pid),
    }


def one_run(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    client, health, peer = devcluster.free_ports(3)
    (node,) = devcluster.write_configs(
        base, [devcluster.NodePorts(1, client, health, peer)], log_level="warning"
    )
    with ProcessGroup() as group:
        proc = group.adopt(devcluster.start_node(node))
        wait_until(
            "leader", lambda: devcluster.http_status(node.health_url + "/primary") == 200, 30
        )
        status, _ = _put(client)
        if status != 200:
            raise RuntimeError(f"could not write the sentinel key: {status}")
        client_latencies(client, 1.0)  # warm up
        alone = measure(client, proc.pid, args.seconds)
        ctx = multiprocessing.get_context("fork")
        ours, theirs = ctx.Pipe()
        attacker = ctx.Process(
            target=attack, args=(client, args.idle, args.slowloris, args.trickle, theirs)
        )
        attacker.start()
        try:
            if not ours.poll(120):
                raise RuntimeError("the attacker did not open its connections within 120 s")
            opened = ours.recv()
            time.sleep(args.settle)
            loaded = measure(client, proc.pid, args.seconds)
            ours.send("stop")
            counts = ours.recv() if ours.poll(60) else {}
        finally:
            attacker.join(timeout=30)
            if attacker.is_alive():
                attacker.kill()
        refusals = _refusals(health)
        return {
            "alone": alone,
            "loaded": loaded,
            "attack": {**opened, **counts},
            "refusals": refusals,
        }


def _put(port: int) -> tuple[int, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"key": "sentinel", "value": "v" * 100})
    conn.request("POST", "/kv", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    result = response.status, response.read()
    conn.close()
    return result


def _refusals(health_port: int) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", health_port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    out = {}
    for line in text.splitlines():
        if line.startswith("raftnode_http_refusals_total{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split("reason=")[1].strip('"}')] = float(value)
    return out


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Median and spread (min, max) of every figure, per phase."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for phase in ("alone", "loaded"):
        out[phase] = {}
        for figure in runs[0][phase]:
            values = [run[phase][figure] for run in runs]
            out[phase][figure] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
            }
    return out


def table(summary: dict[str, dict[str, dict[str, float]]], args: argparse.Namespace) -> str:
    rows = [
        ("client p50 (ms)", "p50_ms", "{:.2f}"),
        ("client p99 (ms)", "p99_ms", "{:.2f}"),
        ("client requests", "requests", "{:.0f}"),
        ("node RSS (MB)", "rss_mb", "{:.1f}"),
        ("node open fds", "fds", "{:.0f}"),
    ]
    loaded = f"{args.idle} idle + {args.slowloris} slowloris"
    lines = [f"{'':18} {'alone':>24} {loaded:>32}"]
    for label, key, fmt in rows:
        cells = []
        for phase in ("alone", "loaded"):
            s = summary[phase][key]
            spread = f"{fmt.format(s['min'])}-{fmt.format(s['max'])}"
            cells.append(f"{fmt.format(s['median'])} ({spread})")
        lines.append(f"{label:18} {cells[0]:>24} {cells[1]:>32}")
    lines.append(f"median of {args.runs} runs (min-max); {args.seconds:g} s per phase")
    return "\n".join(lines)


def plot(summary: dict[str, dict[str, dict[str, float]]], path: Path) -> Path | None:
    """Bars of the medians with their spread; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.5))
    panels = (("client p99 (ms)", "p99_ms"), ("node RSS (MB)", "rss_mb"), ("node fds", "fds"))
    for ax, (title, key) in zip(axes, panels, strict=True):
        figures = [summary[phase][key] for phase in ("alone", "loaded")]
        medians = [f["median"] for f in figures]
        spread = [
            [f["median"] - f["min"] for f in figures],
            [f["max"] - f["median"] for f in figures],
        ]
        ax.bar(["alone", "loaded"], medians, yerr=spread, capsize=4, color=["#888", "#c44"])
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--idle", type=int, default=5000)
    p.add_argument("--slowloris", type=int, default=500)
    p.add_argument("--trickle", type=float, default=2.0, help="seconds between slowloris bytes")
    p.add_argument("--seconds", type=float, default=10.0, help="client measurement per phase")
    p.add_argument("--settle", type=float, default=3.0, help="seconds between attack and measure")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("build/bench"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_sigterm()
    raise_nofile(256)
    runs = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="raftnode-connload-") as tmp:
            run = one_run(args, Path(tmp))
        runs.append(run)
        print(
            f"run {i + 1}: alone p99 {run['alone']['p99_ms']:.2f} ms, loaded p99 "
            f"{run['loaded']['p99_ms']:.2f} ms, RSS {run['loaded']['rss_mb']:.1f} MB, "
            f"fds {run['loaded']['fds']}, attack {run['attack']}, refusals {run['refusals']}",
            flush=True,
        )
    summary = summarize(runs)
    print(table(summary, args))
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "idle": args.idle,
        "slowloris": args.slowloris,
        "trickle_seconds": args.trickle,
        "seconds": args.seconds,
        "runs": runs,
        "summary": summary,
    }
    json_path = args.out / "connection-load.json"
    json_path.write_text(json.dumps(result, indent=2))
    png = plot(summary, args.out / "connection-load.png")
    print(f"wrote {json_path}" + (f" and {png}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
