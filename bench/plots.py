"""PNG plots of the benchmarks' JSON (matplotlib, from the ``bench`` extra): the peer and scale
benchmarks, and the Molecule scenarios' fault rounds (molecule/shared/fault_rounds.py).

Each function returns the path it wrote, or None (with a note) when matplotlib is missing.

    python -m bench.plots fault-rounds --out-dir build/fault-rounds rounds-leader-kill.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or None (and a line on stderr) without it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (pip install -e '.[bench]'): no PNG", file=sys.stderr)
        return None
    return plt


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_peers(result: dict[str, Any], path: Path) -> Path | None:
    plt = pyplot()
    if plt is None:
        return None
    rows = result["rows"]
    writes = [r for r in rows if r["name"] == "write leader"]
    writes.sort(key=lambda r: r["connections"])
    fig, (ax_tp, ax_lat, ax_ratio) = plt.subplots(1, 3, figsize=(17, 5))
    conns = [r["connections"] for r in writes]
    for side, color in (("a", "tab:blue"), ("b", "tab:orange")):
        if not writes:
            break
        label = writes[0][side]["system"]
        tp = [r[side]["ok_per_s"] for r in writes]
        ax_tp.plot(conns, tp, "o-", color=color, label=label)
        p50 = [r[side]["p50_ms"] for r in writes]
        p99 = [r[side]["p99_ms"] for r in writes]
        ax_lat.plot(conns, p50, "o-", color=color, label=f"{label} p50")
        ax_lat.plot(conns, p99, "s--", color=color, alpha=0.6, label=f"{label} p99")
    for ax in (ax_tp, ax_lat):
        ax.set_xscale("log", base=2)
        ax.set_xticks(conns or [1], [str(c) for c in conns] or ["1"])
        ax.set_xlabel("connections")
        ax.grid(True, alpha=0.3)
        ax.legend()
    ax_tp.set_ylabel("writes/s to the leader (2xx)")
    ax_tp.set_title("Write throughput")
    ax_tp.set_ylim(bottom=0)
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_yscale("log")
    ax_lat.set_title("Write latency percentiles")
    labels = [
        f"{r['name']} c{r['connections']}\n{r['a']['system']} / {r['b']['system']}" for r in rows
    ]
    ratios = [r["ratio"] or 0.0 for r in rows]
    y = list(range(len(rows)))
    ax_ratio.barh(y, ratios, color="tab:blue")
    for i, r in enumerate(rows):
        if r.get("target"):
            ax_ratio.plot(
                [r["target"]], [i], "D", color="tab:red", markersize=9, zorder=3, label="target"
            )
    if any(r.get("target") for r in rows):
        ax_ratio.legend(*[x[:1] for x in ax_ratio.get_legend_handles_labels()], loc="lower right")
    ax_ratio.axvline(1.0, color="grey", lw=1)
    ax_ratio.set_yticks(y, labels, fontsize=7)
    ax_ratio.invert_yaxis()
    ax_ratio.set_xlabel("ratio A / B (ok/s)")
    ax_ratio.set_title("Per row")
    meta = result.get("meta", {})
    fig.suptitle(
        f"raftnode side by side, {meta.get('seconds', '?')} s per run, "
        f"{meta.get('rounds', '?')} A/B rounds, {meta.get('cpus', '?')} CPUs "
        f"(one machine: noisy)"
    )
    return _save(plt, fig, path)


def plot_scale(result: dict[str, Any], path: Path) -> Path | None:
    plt = pyplot()
    if plt is None:
        return None
    fig, (ax_tp, ax_rss) = plt.subplots(1, 2, figsize=(13, 5))
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for (system, run), color in zip(result["systems"].items(), colors, strict=False):
        points = run["intervals"]
        keys = [p["keys"] for p in points]
        ax_tp.plot(keys, [p["ok_per_s"] for p in points], "o-", color=color, label=system)
        largest = [max(p["rss_mb"].values(), default=0) for p in points]
        smallest = [min(p["rss_mb"].values(), default=0) for p in points]
        ax_rss.plot(keys, largest, "o-", color=color, label=f"{system} largest node")
        ax_rss.plot(keys, smallest, "--", color=color, alpha=0.6, label=f"{system} smallest node")
    ax_tp.set_title("Writes/s per interval (a new key per write)")
    ax_tp.set_ylabel("writes/s (2xx)")
    ax_tp.set_ylim(bottom=0)
    ax_rss.set_title("RSS per node")
    ax_rss.set_ylabel("MB")
    ax_rss.set_ylim(bottom=0)
    for ax in (ax_tp, ax_rss):
        ax.set_xlim(left=0)
        ax.set_xlabel("keys in the store")
        ax.grid(True, alpha=0.3)
        ax.legend()
    meta = result.get("meta", {})
    fig.suptitle(
        f"Growing store, {meta.get('connections', '?')} connections, "
        f"{meta.get('interval', '?')} s intervals (one machine: noisy)"
    )
    return _save(plt, fig, path)


def plot_app(result: dict[str, Any], path: Path) -> Path | None:
    """bench/app_bench.py: each row's runs for raftnode and etcd (bars: medians, dots: runs)."""
    plt = pyplot()
    if plt is None:
        return None
    rows = result["rows"]
    fig, axes = plt.subplots(1, len(rows), figsize=(4 * len(rows), 4.5), squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        for x, (system, color) in enumerate((("raftnode", "tab:blue"), ("etcd", "tab:orange"))):
            runs = row[system]
            median = sorted(runs)[len(runs) // 2] if runs else 0.0
            ax.bar([x], [median], color=color, alpha=0.7)
            ax.plot([x] * len(runs), runs, "k.", markersize=6)
        ax.set_xticks([0, 1], ["raftnode", "etcd"])
        ratio = row.get("ratio")
        ax.set_title(f"{row['row']}\nratio {ratio:.2f}x" if ratio else row["row"], fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    args = result.get("meta", {}).get("args", {})
    fig.suptitle(
        f"Issue 18 rows: {args.get('runs', '?')} runs of {args.get('seconds', '?')} s, "
        "bars = median, dots = runs (one machine: noisy)"
    )
    return _save(plt, fig, path)


def plot_tls_floor(result: dict[str, Any], path: Path) -> Path | None:
    """bench.tls_floor: per work level, CPU microseconds per request of the responder and of
    wrk, in plaintext and with TLS."""
    plt = pyplot()
    if plt is None:
        return None
    levels = result["levels"]
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.2
    bars = [(side, part) for part in ("server", "wrk") for side in ("plaintext", "tls")]
    for i, (side, part) in enumerate(bars):
        xs = [n + (i - 1.5) * width for n in range(len(levels))]
        label = f"{'responder' if part == 'server' else 'wrk'}, {side}"
        ax.bar(xs, [lv[f"{side}_{part}_us"] for lv in levels], width, label=label)
    ax.set_xticks(range(len(levels)))
    ax.set_xticklabels(
        [f"work {lv['work']}: TLS/plain {lv['ratio']:.2f}x" for lv in levels], fontsize=8
    )
    ax.set_ylabel("CPU us per request (median)")
    ax.set_title("What TLS adds per request on uvloop + OpenSSL (64 connections)")
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_haproxy_cost(result: dict[str, Any], path: Path) -> Path | None:
    """bench.haproxy_cost: per side, the machine's CPU per request stacked by who spent it."""
    plt = pyplot()
    if plt is None:
        return None
    sides = ("direct", "haproxy")
    parts = ("leader", "followers", "haproxy", "wrk")
    fig, ax = plt.subplots(figsize=(7, 4))
    bottoms = [0.0, 0.0]
    for part in [*parts, "kernel and the rest"]:
        if part in parts:
            heights = [result[side][f"{part}_us"] for side in sides]
        else:
            heights = [
                result[side]["machine_us"] - sum(result[side][f"{p}_us"] for p in parts)
                for side in sides
            ]
        ax.bar(sides, heights, 0.5, bottom=bottoms, label=part)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    ax.set_xticks(range(len(sides)))
    ax.set_xticklabels(
        [f"{side}: {result[side]['ok_per_s']:,.0f} ok/s" for side in sides], fontsize=8
    )
    ax.set_ylabel("machine CPU us per write (median)")
    apart = result.get("haproxy_cpu")
    where = "" if apart is None else f" (HAProxy alone on CPU {apart})"
    ax.set_title(
        f"Writes through HAProxy{where}: {result['ratio']:.2f}x of direct\nthe leader's CPU per "
        f"write allows {result['leader_bound_ratio']:.2f}x, the machine's "
        f"{result['machine_bound_ratio']:.2f}x",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_cpu_scheduling(result: dict[str, Any], path: Path) -> Path | None:
    """bench.cpu_scheduling: writes/s per connection count, SCHED_BATCH beside inherit."""
    plt = pyplot()
    if plt is None:
        return None
    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.38
    for k, policy in enumerate(("batch", "inherit")):
        xs = [i + (k - 0.5) * width for i in range(len(rows))]
        ax.bar(xs, [row[policy]["ok_per_s"] for row in rows], width, label=policy)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(
        [f"{row['connections']} connections: {row['ratio']:.3f}x" for row in rows], fontsize=8
    )
    ax.set_ylabel("writes/s (median of the rounds)")
    whose, where = (
        ("HAProxy's", "writes through HAProxy")
        if result.get("subject") == "haproxy"
        else ("the nodes'", "writes to the leader")
    )
    ax.set_title(
        f"cpu_scheduling, {whose} policy: batch (SCHED_BATCH) against inherit, {where}",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def save_results(
    out: Path,
    name: str,
    result: dict[str, Any],
    plot: Callable[[dict[str, Any], Path], Path | None],
) -> None:
    """Write ``NAME.json`` and, where matplotlib is installed, ``NAME.png`` under ``out``."""
    json_path = out / f"{name}.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    png = plot(result, out / f"{name}.png")
    print(f"\nwrote {json_path}" + (f" and {png}" if png else ""))


def plot_fault_rounds(report: dict[str, Any], path: Path) -> Path | None:
    """One bar per round: how long a client writing through the VIP got no acknowledgement."""
    plt = pyplot()
    if plt is None:
        return None
    rounds = report["rounds"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.bar(
        [r["round"] for r in rounds],
        [r["window_ms"] for r in rounds],
        color=["tab:red" if r["failed"] else "tab:blue" for r in rounds],
    )
    for r in rounds:
        ax.annotate(r["target"], (r["round"], r["window_ms"]), ha="center", va="bottom", fontsize=8)
    ax.axhline(
        report["median_ms"], color="black", linestyle="--", label=f"median {report['median_ms']} ms"
    )
    ax.axhline(report["max_ms"], color="grey", linestyle=":", label=f"max {report['max_ms']} ms")
    ax.set_xlabel("round (bar label: the host hit; red: some attempts failed and were retried)")
    ax.set_ylabel("write-unavailability window, ms")
    ax.set_ylim(bottom=0)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    ax.set_title(
        f"{report['fault']} x{len(rounds)} through the VIP: {report['acknowledged']} writes "
        f"acknowledged, {report['failed']} failed attempts, {len(report['lost'])} lost"
    )
    return _save(plt, fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="PNG plots of benchmark and fault-round JSON")
    sub = parser.add_subparsers(dest="kind", required=True)
    p = sub.add_parser("fault-rounds", help="molecule/shared/fault_rounds.py reports")
    p.add_argument(
        "--out-dir", type=Path, required=True, help="gets a copy of each JSON and its PNG"
    )
    p.add_argument("reports", nargs="+", type=Path)
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for report_path in args.reports:
        kept = args.out_dir / report_path.name
        if kept.resolve() != report_path.resolve():
            shutil.copyfile(report_path, kept)
        png = plot_fault_rounds(json.loads(report_path.read_text()), kept.with_suffix(".png"))
        print(f"wrote {kept}" + (f" and {png}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
