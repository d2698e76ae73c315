"""Issue 18's application rows, raftnode against etcd (Debian's etcd-server) in the same run:
transactions, watch fan-out, lease keep-alives.

    python -m bench.app_bench --runs 3 --seconds 5 --out build/bench

- txn: compare-and-put transactions (compare a random key's version, then put it; the compare
  always holds) at ``--connections``, wrk (bench/wrk/kv.lua mode=txn) to the leader.
- keepalive: renewals of ``--leases`` leases (granted first, TTL 600 s) at ``--connections``,
  wrk (mode=keepalive) to the leader. etcd's gateway keep-alive is a stream; wrk sends one
  request per stream, so etcd pays a stream set-up per renewal, as an HTTP client must.
- watch fan-out: ``--watchers`` streams on one prefix over ``--watch-procs`` client processes
  and every node of the cluster, a writer at ``--watch-rate`` puts/s for ``--seconds``
  (bench/watch_fanout.py): delivery p50/p99 from the write's acknowledgement, events missed,
  the write rate achieved (below the asked rate: the system did not keep up) and the client
  processes' CPU (a client near 100% measures itself, not the server). ``--watch-rate`` takes
  a list (``100,250,500,1000``): one fan-out row per rate, to show where each system stops
  keeping up.

``--rows`` picks the rows (default ``txn,keepalive,watch``).

Every row runs A/B/A/B (raftnode, etcd, raftnode, ...) ``--runs`` times; the table gives the
median of the runs with the spread (min-max) and the raftnode/etcd ratio of the medians. Writes
app.txt, app.json and app.png under --out. Every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import plots
from bench.deps import ensure_commands
from bench.peers.etcd import EtcdCluster
from bench.peers.raftnode import RaftnodeCluster
from bench.procs import ProcessGroup, install_sigterm, request_json
from bench.report import format_table
from bench.watch_fanout import FanoutResult, run_fanout
from bench.wrkrun import run_wrk

REPO = Path(__file__).resolve().parent.parent
SYSTEMS = ("raftnode", "etcd")
Cluster = RaftnodeCluster | EtcdCluster


def grant_leases(cluster: Cluster, count: int) -> list[str]:
    """``count`` leases with a TTL of 600 s on ``cluster``'s leader; their ids."""
    url = cluster.leader_url()
    ids = []
    for _ in range(count):
        if isinstance(cluster, EtcdCluster):
            code, body = request_json(url + "/v3/lease/grant", {"TTL": 600})
            key = "ID"
        else:
            code, body = request_json(url + "/lease", {"ttl": 600})
            key = "id"
        if code != 200 or not isinstance(body, dict) or key not in body:
            raise RuntimeError(f"{cluster.name}: lease grant answered HTTP {code}: {body}")
        ids.append(str(body[key]))
    return ids


def rates(text: str) -> list[float]:
    """``--watch-rate``: one rate or a comma-separated list, each positive."""
    try:
        out = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"rates are numbers, got {text!r}") from None
    if not out or any(r <= 0 for r in out):
        raise argparse.ArgumentTypeError(f"rates must be positive, got {text!r}")
    return out


def spread(values: list[float], fmt: str = ",.0f") -> str:
    """median (min-max)."""
    if not values:
        return "-"
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def ratio(a: list[float], b: list[float]) -> float | None:
    if not a or not b or statistics.median(b) == 0:
        return None
    return statistics.median(a) / statistics.median(b)


class AppBench:
    def __init__(self, args: argparse.Namespace, clusters: dict[str, Cluster]) -> None:
        self.args = args
        self.clusters = clusters
        self.leases: dict[str, list[str]] = {}
        self.wrk: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.fanout: dict[tuple[float, str], list[FanoutResult]] = {}

    def wrk_row(self, row: str, system: str) -> None:
        cluster = self.clusters[system]
        cluster.settle()
        script = {
            "dialect": cluster.dialect,
            "mode": row,
            "keys": "1000",
            "value_bytes": "100",
            "prefix": "txn-",
        }
        if row == "keepalive":
            script["leases"] = ",".join(self.leases[system])
        res = run_wrk(
            cluster.leader_url(),
            connections=self.args.connections,
            seconds=self.args.seconds,
            script_args=script,
        )
        self.wrk.setdefault((row, system), []).append(res.to_json())
        print(
            f"  {row:<9} {system:<8} {res.ok_per_s:8,.0f} ok/s  p50 {res.latency_ms('p50'):6.1f}"
            f" ms  p99 {res.latency_ms('p99'):6.1f} ms  errors {res.errors}",
            flush=True,
        )

    def fanout_row(self, rate: float, system: str) -> None:
        cluster = self.clusters[system]
        cluster.settle()
        res = run_fanout(
            cluster.dialect,
            [n.client_url for n in cluster.nodes],
            cluster.leader_url(),
            watchers=self.args.watchers,
            rate=rate,
            seconds=self.args.seconds,
            procs=self.args.watch_procs,
            # Enough connections that the writer's own round trips do not cap the rate (the
            # same for both systems): 8, or one per 50 writes/s.
            writer_connections=max(8, math.ceil(rate / 50)),
        )
        self.fanout.setdefault((rate, system), []).append(res)
        print(
            f"  watch     {system:<8} {res.watchers} watchers {res.rate:g}/s (achieved "
            f"{res.achieved_rate:,.0f}/s): p50 {res.p50_ms:7.1f} ms  p99 {res.p99_ms:7.1f} ms  "
            f"missed {res.missed}  write errors {res.write_errors}  client CPU % "
            f"{res.client_cpu_pct}",
            flush=True,
        )

    def run(self) -> None:
        for system in SYSTEMS:
            self.leases[system] = grant_leases(self.clusters[system], self.args.leases)
        for n in range(self.args.runs):
            print(f"run {n + 1}/{self.args.runs}", flush=True)
            for row in ("txn", "keepalive"):
                if row in self.args.rows:
                    for system in SYSTEMS:
                        self.wrk_row(row, system)
            if self.args.watchers > 0 and "watch" in self.args.rows:
                for rate in self.args.watch_rate:
                    for system in SYSTEMS:
                        self.fanout_row(rate, system)

    def table_rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for row in ("txn", "keepalive"):
            if (row, "raftnode") not in self.wrk:
                continue
            a = [r["ok_per_s"] for r in self.wrk[(row, "raftnode")]]
            b = [r["ok_per_s"] for r in self.wrk[(row, "etcd")]]
            rows.append(
                {
                    "row": f"{row} c={self.args.connections} (ok/s)",
                    "raftnode": a,
                    "etcd": b,
                    "ratio": ratio(a, b),
                    "errors": {
                        s: sum(r["non2xx"] + r["socket_errors"] for r in self.wrk[(row, s)])
                        for s in SYSTEMS
                    },
                }
            )
        for rate in self.args.watch_rate if self.fanout else ():
            shape = f"{self.args.watchers}x{rate:g}/s"
            runs = {s: self.fanout[(rate, s)] for s in SYSTEMS}
            for q, unit in (("p50_ms", "ms"), ("p99_ms", "ms"), ("achieved_rate", "writes/s")):
                a = [getattr(r, q) for r in runs["raftnode"]]
                b = [getattr(r, q) for r in runs["etcd"]]
                label = q[:3] if unit == "ms" else "achieved"
                rows.append(
                    {
                        "row": f"watch {shape} {label} ({unit})",
                        "raftnode": a,
                        "etcd": b,
                        "ratio": ratio(a, b),
                        "errors": {
                            s: sum(r.missed + r.write_errors for r in runs[s]) for s in SYSTEMS
                        },
                    }
                )
        return rows

    def table(self) -> str:
        cells = []
        for r in self.table_rows():
            fmt = ",.1f" if "(ms)" in r["row"] else ",.0f"
            cells.append(
                [
                    r["row"],
                    spread(r["raftnode"], fmt),
                    spread(r["etcd"], fmt),
                    f"{r['ratio']:.2f}x" if r["ratio"] is not None else "n/a",
                    f"{r['errors']['raftnode']}/{r['errors']['etcd']}",
                ]
            )
        lines = [
            f"{self.args.runs} runs of {self.args.seconds:g} s per row, A/B alternating; median "
            "(min-max) of the runs; ratio: raftnode median / etcd median (ok/s: higher is "
            "better for raftnode; ms: lower is). achieved: writes/s the writer got acknowledged "
            "(below the asked rate: that system did not keep up).",
            "errors: non-2xx + socket errors (watch: missed events + failed writes), "
            "raftnode/etcd. One 2-core machine shared by servers and clients: noisy.",
            format_table(("row", "raftnode", "etcd", "ratio", "errors"), cells),
        ]
        if self.fanout:
            cpu = {
                s: max(c for (_, sy), rs in self.fanout.items() if sy == s for r in rs
                       for c in r.client_cpu_pct)
                for s in SYSTEMS
            }  # fmt: skip
            lines.append(
                f"watch clients: {self.args.watch_procs} processes; busiest client CPU "
                f"raftnode {cpu['raftnode']:.0f}%, etcd {cpu['etcd']:.0f}%"
                + (
                    " (>= 85%: the clients may set the latency)"
                    if max(cpu.values()) >= 85.0
                    else " (the clients are not saturated)"
                )
            )
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "meta": {
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "host": platform.node(),
                "args": {k: v for k, v in vars(self.args).items() if k != "out"},
            },
            "rows": self.table_rows(),
            "wrk": {f"{row}/{s}": rs for (row, s), rs in self.wrk.items()},
            "fanout": {
                f"{rate:g}/{s}": [r.to_json() for r in rs] for (rate, s), rs in self.fanout.items()
            },
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.app_bench", description=__doc__)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--leases", type=int, default=64)
    p.add_argument("--watchers", type=int, default=1000, help="0 skips the fan-out row")
    p.add_argument(
        "--watch-rate",
        type=rates,
        default=[100.0],
        help="writes/s during the fan-out; a comma-separated list runs one row per rate",
    )
    p.add_argument(
        "--rows",
        type=lambda text: sorted(set(text.split(","))),
        default=["keepalive", "txn", "watch"],
        help="comma-separated: txn, keepalive, watch",
    )
    p.add_argument("--watch-procs", type=int, default=4)
    p.add_argument("--out", type=Path, default=REPO / "build" / "bench")
    args = p.parse_args(argv)
    if args.runs < 1 or args.seconds <= 0 or args.connections < 1 or args.watch_procs < 1:
        p.error("--runs, --seconds, --connections and --watch-procs must be positive")
    unknown = set(args.rows) - {"txn", "keepalive", "watch"}
    if unknown or not args.rows:
        p.error(f"--rows takes txn, keepalive, watch; got {','.join(sorted(unknown)) or 'none'}")
    install_sigterm()
    ensure_commands(["etcd", "wrk"])
    args.out.mkdir(parents=True, exist_ok=True)
    with ProcessGroup() as procs:
        work = Path(tempfile.mkdtemp(prefix="app-", dir=args.out))
        clusters: dict[str, Cluster] = {
            "raftnode": RaftnodeCluster(work / "raftnode", procs),
            "etcd": EtcdCluster(work / "etcd", procs),
        }
        for name, cluster in clusters.items():
            print(f"starting {name}", flush=True)
            cluster.start()
        bench = AppBench(args, clusters)
        bench.run()
    table = bench.table()
    print("\n" + table)
    (args.out / "app.txt").write_text(table + "\n")
    data = bench.to_json()
    (args.out / "app.json").write_text(json.dumps(data, indent=2) + "\n")
    png = plots.plot_app(data, args.out / "app.png")
    if png:
        print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
