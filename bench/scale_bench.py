"""Growing store: raftnode and etcd each take a new key per write (64 connections) until a key
target or a time budget, interval by interval, alternating the two systems per interval so
drift hits both. Then, with the full store, each restarts a follower (time until it is ready)
and replaces a follower with a wiped one (time until it has caught up with the leader).

    python -m bench.scale_bench --keys 1000000 --duration 240 --interval 10 --out build/bench

Per interval it prints writes/s, latency, RSS per node (from /proc), and the term and leader
(raftnode /status; etcd /v3/maintenance/status); at the end a summary table, and scale.json
and scale.png (throughput and RSS against the key count) under --out.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import plots
from bench.deps import ensure_commands
from bench.peers.etcd import EtcdCluster
from bench.peers.raftnode import RaftnodeCluster
from bench.preload import write_one
from bench.procs import ProcessGroup, dir_bytes, install_sigterm, wait_until
from bench.report import format_ratio, format_table, ratio
from bench.wrkrun import run_wrk

REPO = Path(__file__).resolve().parent.parent
MB = 1024 * 1024


@dataclass(slots=True)
class GrowingRun:
    system: str
    cluster: Any  # RaftnodeCluster | EtcdCluster: the same duck-typed surface
    keys: int = 0
    load_s: float = 0.0
    done: bool = False
    term_start: int = 0
    leaders_seen: list[int] = field(default_factory=list)
    intervals: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def leader_changes(self) -> int:
        return sum(
            1 for a, b in zip(self.leaders_seen, self.leaders_seen[1:], strict=False) if a != b
        )


def next_chunk_seconds(run: GrowingRun, interval: float, duration: float) -> int:
    """Seconds of the next wrk run: an interval, shortened only by the time budget.

    Not by the key target: short runs near it would give noisy points; a run may overshoot
    the target by up to one interval's writes, and reports the keys it really wrote.
    """
    return max(1, round(min(interval, duration - run.load_s)))


def grow_one_interval(run: GrowingRun, args: argparse.Namespace) -> None:
    chunk = len(run.intervals)
    seconds = next_chunk_seconds(run, args.interval, args.duration)
    res = run_wrk(
        run.cluster.leader_url(),
        connections=args.connections,
        seconds=seconds,
        script_args={
            "dialect": run.cluster.dialect,
            "mode": "unique",
            "prefix": f"k{chunk}-",
            "value_bytes": str(args.value_bytes),
        },
    )
    run.keys += res.ok
    run.load_s += res.duration_s
    term, leader = run.cluster.term_and_leader()
    run.leaders_seen.append(leader)
    rss = {name: round(b / MB, 1) for name, b in run.cluster.rss().items()}
    point = {
        "interval": chunk,
        "keys": run.keys,
        "load_s": round(run.load_s, 2),
        "ok_per_s": round(res.ok_per_s, 1),
        "p50_ms": round(res.latency_ms("p50"), 2),
        "p99_ms": round(res.latency_ms("p99"), 2),
        "errors": res.errors,
        "rss_mb": rss,
        "term": term,
        "leader": leader,
    }
    run.intervals.append(point)
    rss_text = " ".join(f"{k} {v:.0f}" for k, v in rss.items())
    print(
        f"  {run.system:<8} #{chunk:<3} keys {run.keys:>10,}  {res.ok_per_s:8,.0f} writes/s  "
        f"p50 {point['p50_ms']:7.1f} p99 {point['p99_ms']:7.1f} ms  errors {res.errors}  "
        f"RSS MB {rss_text}  term {term} leader {leader}",
        flush=True,
    )
    if run.keys >= args.keys or run.load_s >= args.duration - 0.5:
        run.done = True


def timed_restart(run: GrowingRun, wipe: bool, timeout: float) -> dict[str, Any]:
    """Restart (or wipe and replace) a follower; seconds until ready (and caught up)."""
    cluster = run.cluster
    leader = cluster.wait_leader()
    follower = cluster.follower()
    index = cluster.progress_index(leader)
    what = "wiped follower catch-up" if wipe else "restart to ready"
    leader_url = leader.client_url
    start = time.monotonic()
    cluster.restart_node(follower, wipe=wipe)
    # A trickle of writes (2 a second) while waiting, as a live cluster has: a leader may only
    # notice that a follower lost its log when it next sends it entries.
    last_write = [start]

    def caught_up() -> bool:
        now = time.monotonic()
        if now - last_write[0] >= 0.5:
            last_write[0] = now
            write_one(leader_url, cluster.dialect, f"catchup-{now:.3f}", "x" * 100)
        return bool(cluster.caught_up(follower, index))

    try:
        wait_until(f"{run.system} {what}", caught_up, timeout)
    except TimeoutError as e:
        st = cluster.status(follower)
        seen = {k: st[k] for k in ("role", "term", "commit", "applied", "last_index") if k in st}
        print(f"  {run.system}: {e}; the follower reports {seen or st}", flush=True)
        return {"seconds": None, "error": str(e), "index": index, "follower_status": seen}
    took = time.monotonic() - start
    rss = cluster.rss()
    print(f"  {run.system:<8} {what}: {took:.2f} s (to index/revision {index:,})", flush=True)
    return {"seconds": round(took, 2), "index": index, "rss_mb_after": _mb(rss)}


def _mb(values: dict[str, int]) -> dict[str, float]:
    return {k: round(v / MB, 1) for k, v in values.items()}


def finish(run: GrowingRun, timeout: float) -> None:
    cluster = run.cluster
    term_end, _ = cluster.term_and_leader()
    rates = [p["ok_per_s"] for p in run.intervals]
    run.summary = {
        "keys": run.keys,
        "load_s": round(run.load_s, 1),
        "mean_ok_per_s": round(run.keys / run.load_s, 1) if run.load_s else 0.0,
        "first_interval_ok_per_s": rates[0] if rates else 0.0,
        "last_interval_ok_per_s": rates[-1] if rates else 0.0,
        "term_changes": term_end - run.term_start,
        "leader_changes": run.leader_changes,
        "max_rss_mb": max((max(p["rss_mb"].values()) for p in run.intervals), default=0.0),
        "data_dir_mb": {
            str(getattr(n, "name", None) or f"n{n.ports.node_id}"): round(
                dir_bytes(cluster.data_dir(n)) / MB, 1
            )
            for n in cluster.nodes
        },
    }
    print(f"{run.system}: restart a follower with the full store", flush=True)
    run.summary["restart"] = timed_restart(run, wipe=False, timeout=timeout)
    print(f"{run.system}: wipe a follower and let it catch up", flush=True)
    run.summary["wiped_catch_up"] = timed_restart(run, wipe=True, timeout=timeout)


def summary_table(runs: list[GrowingRun]) -> str:
    by = {r.system: r.summary for r in runs}
    a, b = by.get("raftnode", {}), by.get("etcd", {})

    def num(d: dict[str, Any], *path: str) -> float | None:
        v: Any = d
        for p in path:
            v = v.get(p) if isinstance(v, dict) else None
        return float(v) if isinstance(v, int | float) else None

    def cell(v: float | None, fmt: str) -> str:
        return "n/a" if v is None else format(v, fmt)

    metrics = [
        ("keys written", ("keys",), ",.0f"),
        ("load seconds", ("load_s",), ".0f"),
        ("mean writes/s", ("mean_ok_per_s",), ",.0f"),
        ("first interval writes/s", ("first_interval_ok_per_s",), ",.0f"),
        ("last interval writes/s", ("last_interval_ok_per_s",), ",.0f"),
        ("term changes", ("term_changes",), ".0f"),
        ("leader changes seen", ("leader_changes",), ".0f"),
        ("largest RSS MB", ("max_rss_mb",), ",.0f"),
        ("restart to ready s", ("restart", "seconds"), ".2f"),
        ("wiped follower catch-up s", ("wiped_catch_up", "seconds"), ".2f"),
    ]
    rows = []
    for label, path, fmt in metrics:
        va, vb = num(a, *path), num(b, *path)
        r = ratio(va, vb) if va is not None and vb is not None else None
        rows.append([label, cell(va, fmt), cell(vb, fmt), format_ratio(r)])
    dirs = [
        "data dir MB per node",
        " ".join(f"{v:.0f}" for v in a.get("data_dir_mb", {}).values()) or "n/a",
        " ".join(f"{v:.0f}" for v in b.get("data_dir_mb", {}).values()) or "n/a",
        "",
    ]
    rows.append(dirs)
    return format_table(["metric", "raftnode", "etcd", "raftnode/etcd"], rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale_bench", description=__doc__)
    p.add_argument("--keys", type=int, default=1_000_000, help="key target per system")
    p.add_argument("--duration", type=float, default=240.0, help="load seconds per system")
    p.add_argument("--interval", type=float, default=10.0, help="seconds per reported interval")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--value-bytes", type=int, default=100)
    p.add_argument(
        "--restart-timeout", type=float, default=300.0, help="bound on restart and catch-up"
    )
    p.add_argument("--out", type=Path, default=REPO / "build" / "bench")
    p.add_argument("--keep-data", action="store_true", help="keep the clusters' data dirs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_sigterm()
    ensure_commands(["etcd", "wrk"])
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="scale-", dir=args.out))
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    runs: list[GrowingRun] = []
    failed: BaseException | None = None
    try:
        with ProcessGroup() as procs:
            raft = RaftnodeCluster(work / "raftnode", procs)
            etcd = EtcdCluster(work / "etcd", procs)
            for cluster in (raft, etcd):
                print(f"starting {cluster.name}", flush=True)
                cluster.start()
                run = GrowingRun(cluster.name, cluster)
                run.term_start, leader = cluster.term_and_leader()
                run.leaders_seen.append(leader)
                runs.append(run)
            print(
                f"growing each store to {args.keys:,} keys or {args.duration:g} s of load, "
                f"{args.connections} connections, intervals of {args.interval:g} s",
                flush=True,
            )
            while not all(r.done for r in runs):
                for run in runs:
                    if not run.done:
                        run.cluster.settle()
                        grow_one_interval(run, args)
            for run in runs:
                finish(run, args.restart_timeout)
    except (Exception, KeyboardInterrupt, SystemExit) as e:
        failed = e
        print(f"benchmark stopped early: {e!r}; logs under {work}", file=sys.stderr)
    finally:
        if failed is None and not args.keep_data:
            shutil.rmtree(work, ignore_errors=True)
    if not runs:
        return 1
    table = "\n".join(
        [
            "One machine, noisy. RSS from /proc/PID/status; terms from /status and etcd's status.",
            summary_table(runs),
        ]
    )
    print("\n" + table)
    (args.out / "scale.txt").write_text(table + "\n")
    result = {
        "meta": {
            "started": started,
            "key_target": args.keys,
            "duration": args.duration,
            "interval": args.interval,
            "connections": args.connections,
            "value_bytes": args.value_bytes,
        },
        "systems": {r.system: {"intervals": r.intervals, "summary": r.summary} for r in runs},
        "complete": failed is None,
    }
    plots.save_results(args.out, "scale", result, plots.plot_scale)
    return 0 if failed is None else 1


if __name__ == "__main__":
    sys.exit(main())
