"""Side-by-side: raftnode against etcd (and PySyncObj, and itself behind HAProxy and nginx),
same wrk script, same keys and values, runs alternating A/B/A/B so that drift hits both.

    python -m bench.peers_bench --seconds 10 --rounds 2 --out build/bench

Starts a 3-node raftnode, a 3-member etcd (Debian's etcd-server, JSON gateway), 3 PySyncObj KV
processes, an HAProxy and the nginx role's nginx, all on free loopback ports, installs what is
missing (apt-get, a PySyncObj virtualenv), prints one table with A/B ratios, and writes
peers.json and peers.png under --out. The TLS rows (``--rows tls`` for those alone) run a
raftnode with HTTPS and peer mutual TLS against an etcd with client TLS and peer mutual TLS
(``--cert-file``, ``--peer-cert-file``, ``--peer-client-cert-auth``), and raftnode with TLS
against itself without. Every process it starts is stopped at the end, on failure
too.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import plots
from bench.client_bench import leader_first
from bench.client_load import run_client_load
from bench.deps import ensure_commands, ensure_pysyncobj_venv
from bench.peers.etcd import EtcdCluster
from bench.peers.haproxy import LocalHaproxy
from bench.peers.nginx import BenchNginx
from bench.peers.pysyncobj import PySyncObjCluster
from bench.peers.raftnode import RaftnodeCluster
from bench.peers.tls import make_bench_tls, trust_in_process
from bench.preload import preload
from bench.procs import ProcessGroup, install_sigterm
from bench.report import Measurement, Row, format_rows
from bench.wrkrun import WrkResult, run_wrk

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Target:
    """One side of a row: which system, where to send (resolved per run), what to send."""

    system: str
    url: Callable[[], str]
    script_args: dict[str, str]
    settle: Callable[[], None]
    run: Callable[[int, float], WrkResult] | None = None
    """Instead of wrk at ``url``: another load (connections, seconds), e.g. raftnode.client."""


def target(system: str, cluster: object, where: str, args: dict[str, str]) -> Target:
    """One side of a row: ``cluster``'s ``leader`` or ``follower`` URL, resolved per run."""
    url = getattr(cluster, f"{where}_url")
    return Target(system, url, args, cluster.settle)  # type: ignore[attr-defined]


class PeerBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rows: list[Row] = []

    def script_args(self, dialect: str, mode: str, **extra: str) -> dict[str, str]:
        return {
            "dialect": dialect,
            "mode": mode,
            "keys": str(self.args.keys),
            "value_bytes": str(self.args.value_bytes),
            "prefix": "bench-",
            **extra,
        }

    def measure(
        self, name: str, connections: int, a: Target, b: Target, target: float | None = None
    ) -> Row:
        row = Row(name, Measurement(a.system), Measurement(b.system), connections, target)
        for rnd in range(self.args.rounds):
            for side, meas in ((a, row.a), (b, row.b)):
                side.settle()
                if side.run is not None:
                    res = side.run(connections, self.args.seconds)
                else:
                    res = run_wrk(
                        side.url(),
                        connections=connections,
                        seconds=self.args.seconds,
                        script_args=side.script_args,
                    )
                meas.add(res.ok_per_s, res.latency_ms("p50"), res.latency_ms("p99"), res.errors)
                print(
                    f"  {name} c={connections} round {rnd + 1} {side.system:<22} "
                    f"{res.ok_per_s:9,.0f} ok/s  p50 {res.latency_ms('p50'):7.1f} ms  "
                    f"p99 {res.latency_ms('p99'):7.1f} ms  errors {res.errors}",
                    flush=True,
                )
        self.rows.append(row)
        return row

    def run(self, work: Path, procs: ProcessGroup, pysyncobj_python: Path) -> None:
        if self.args.rows in ("all", "plain"):
            self.run_plain(work, procs, pysyncobj_python)
        if self.args.rows in ("all", "tls"):
            self.run_tls(work, procs)

    def run_tls(self, work: Path, procs: ProcessGroup) -> None:
        """raftnode with TLS against etcd with TLS (same rows as the plaintext ones), and
        raftnode with TLS against itself without: what TLS costs it."""
        a = self.args
        tls = make_bench_tls(work / "tls", [1, 2, 3], ["e1", "e2", "e3"])
        trust_in_process(tls.ca_file)
        raft_tls = RaftnodeCluster(work / "raftnode-tls", procs, tls=tls)
        etcd_tls = EtcdCluster(work / "etcd-tls", procs, tls=tls)
        raft = RaftnodeCluster(work / "raftnode-plain", procs)
        for cluster in (raft_tls, etcd_tls, raft):
            print(f"starting {cluster.name}", flush=True)
            cluster.start()

        raft_w = self.script_args("raftnode", "write")
        etcd_w = self.script_args("etcd", "write")
        for conns in a.connections:
            self.measure(
                "TLS write leader",
                conns,
                target("raftnode TLS", raft_tls, "leader", raft_w),
                target("etcd TLS", etcd_tls, "leader", etcd_w),
            )
        self.measure(
            "TLS cost, write leader",
            64,
            target("raftnode TLS", raft_tls, "leader", raft_w),
            target("raftnode plaintext", raft, "leader", raft_w),
            target=0.85,
        )
        print(f"preloading bench-0..{a.keys - 1}", flush=True)
        for cluster, dialect in ((raft_tls, "raftnode"), (etcd_tls, "etcd"), (raft, "raftnode")):
            preload(cluster.leader_url(), dialect, keys=a.keys, value_bytes=a.value_bytes)
        raft_r = self.script_args("raftnode", "read")
        self.measure(
            "TLS read linearizable follower",
            64,
            target("raftnode TLS", raft_tls, "follower", raft_r),
            target("etcd TLS", etcd_tls, "follower", self.script_args("etcd", "read")),
        )
        self.measure(
            "TLS cost, read lin. follower",
            64,
            target("raftnode TLS", raft_tls, "follower", raft_r),
            target("raftnode plaintext", raft, "follower", raft_r),
            target=0.85,
        )

    def run_plain(self, work: Path, procs: ProcessGroup, pysyncobj_python: Path) -> None:
        a = self.args
        raft = RaftnodeCluster(work / "raftnode", procs)
        etcd = EtcdCluster(work / "etcd", procs)
        pso = PySyncObjCluster(work / "pysyncobj", procs, pysyncobj_python)
        for cluster in (raft, etcd, pso):
            print(f"starting {cluster.name}", flush=True)
            cluster.start()
        lb = LocalHaproxy(work / "haproxy", procs, raft)
        print("starting haproxy", flush=True)
        lb.start()
        ngx = BenchNginx(work / "nginx", procs, raft)
        print("starting nginx (roles/nginx)", flush=True)
        ngx.start()

        raft_w = self.script_args("raftnode", "write")
        etcd_w = self.script_args("etcd", "write")
        for conns in a.connections:
            self.measure(
                "write leader",
                conns,
                target("raftnode", raft, "leader", raft_w),
                target("etcd", etcd, "leader", etcd_w),
            )
        self.measure(
            "write haproxy vs direct",
            64,
            Target("raftnode via haproxy", lambda: lb.url, raft_w, raft.settle),
            target("raftnode direct", raft, "leader", raft_w),
        )
        self.measure(
            "write nginx vs haproxy",
            64,
            Target("raftnode via nginx", lambda: ngx.url, raft_w, raft.settle),
            Target("raftnode via haproxy", lambda: lb.url, raft_w, raft.settle),
        )
        keyed = self.script_args("raftnode", "write", keyed="1")
        for mode in ("async", "sync"):
            self.measure(
                f"write client {mode} vs wrk",
                64,
                Target(
                    f"raftnode.client {mode}",
                    raft.leader_url,
                    keyed,
                    raft.settle,
                    run=client_load(raft, mode, a.keys, a.value_bytes),
                ),
                target("wrk keyed", raft, "leader", keyed),
            )
        print(f"preloading bench-0..{a.keys - 1}", flush=True)
        preload(raft.leader_url(), "raftnode", keys=a.keys, value_bytes=a.value_bytes)
        preload(etcd.leader_url(), "etcd", keys=a.keys, value_bytes=a.value_bytes)
        etcd_r = self.script_args("etcd", "read")
        self.measure(
            "read linearizable follower",
            64,
            target("raftnode", raft, "follower", self.script_args("raftnode", "read")),
            target("etcd", etcd, "follower", etcd_r),
        )
        raft_r = self.script_args("raftnode", "read")
        self.measure(
            "read nginx vs haproxy",
            64,
            Target("raftnode via nginx", lambda: ngx.url, raft_r, raft.settle),
            Target("raftnode via haproxy", lambda: lb.url, raft_r, raft.settle),
        )
        self.measure(
            "read haproxy vs direct",
            64,
            Target("raftnode via haproxy", lambda: lb.url, raft_r, raft.settle),
            target("raftnode direct", raft, "follower", raft_r),
        )
        self.measure(
            "read stale follower vs etcd lin.",
            64,
            target(
                "raftnode stale",
                raft,
                "follower",
                self.script_args("raftnode", "read", query="?consistency=stale"),
            ),
            target("etcd linearizable", etcd, "follower", etcd_r),
            target=2.0,
        )
        self.measure(
            "write leader vs pysyncobj",
            64,
            target("raftnode", raft, "leader", raft_w),
            target("pysyncobj", pso, "leader", self.script_args("pysyncobj", "write")),
        )


def client_load(
    raft: RaftnodeCluster, mode: str, keys: int, value_bytes: int
) -> Callable[[int, float], WrkResult]:
    """The same writes as kv.lua's, sent through raftnode.client (``mode``: sync or async)."""

    def run(connections: int, seconds: float) -> WrkResult:
        return run_client_load(
            leader_first(raft),
            mode,
            connections=connections,
            seconds=seconds,
            keys=keys,
            value_bytes=value_bytes,
        )

    return run


def versions() -> dict[str, str]:
    def out(argv: list[str]) -> str:
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        except OSError:
            return "?"
        return (p.stdout or p.stderr).strip().splitlines()[0] if (p.stdout or p.stderr) else "?"

    return {
        "etcd": out(["etcd", "--version"]),
        "wrk": out(["wrk", "-v"]),
        "python": platform.python_version(),
        "cpus": str(os.cpu_count()),
        "loadavg_start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.peers_bench", description=__doc__)
    p.add_argument("--seconds", type=float, default=10.0, help="duration of each wrk run")
    p.add_argument("--rounds", type=int, default=2, help="A/B rounds per row (A/B/A/B = 2)")
    p.add_argument(
        "--connections",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[8, 64, 256],
        help="comma-separated connection counts for the leader-write rows",
    )
    p.add_argument(
        "--rows",
        choices=("all", "plain", "tls"),
        default="all",
        help="the plaintext rows, the TLS rows, or both",
    )
    p.add_argument("--keys", type=int, default=10000, help="key space bench-0..N-1")
    p.add_argument("--value-bytes", type=int, default=100)
    p.add_argument("--out", type=Path, default=REPO / "build" / "bench")
    p.add_argument("--pysyncobj-venv", type=Path, default=REPO / "build" / "venv-pysyncobj")
    p.add_argument("--keep-data", action="store_true", help="keep the clusters' data dirs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_sigterm()
    ensure_commands(["etcd", "wrk", "haproxy"])
    pysyncobj_python = (
        ensure_pysyncobj_venv(args.pysyncobj_venv) if args.rows != "tls" else Path(sys.executable)
    )
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="peers-", dir=args.out))
    meta = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **versions()}
    bench = PeerBench(args)
    failed: BaseException | None = None
    try:
        with ProcessGroup() as procs:
            bench.run(work, procs, pysyncobj_python)
    except (Exception, KeyboardInterrupt, SystemExit) as e:
        failed = e
        print(f"benchmark stopped early: {e!r}; logs under {work}", file=sys.stderr)
    finally:
        if failed is None and not args.keep_data:
            shutil.rmtree(work, ignore_errors=True)
    if not bench.rows:
        return 1
    table = "\n".join(
        [
            f"{args.seconds:g} s per run, {args.rounds} A/B rounds, means of the rounds' ok/s,",
            "medians of their latencies; A/B is A's ok/s over B's. One machine, noisy.",
            format_rows(bench.rows),
        ]
    )
    print("\n" + table)
    (args.out / "peers.txt").write_text(table + "\n")
    result = {
        "meta": {**meta, "seconds": args.seconds, "rounds": args.rounds, "keys": args.keys},
        "rows": [r.to_json() for r in bench.rows],
        "complete": failed is None,
    }
    plots.save_results(args.out, "peers", result, plots.plot_peers)
    return 0 if failed is None else 1


if __name__ == "__main__":
    sys.exit(main())
