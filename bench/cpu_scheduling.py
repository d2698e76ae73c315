"""What a CPU scheduling policy does to writes: ``batch`` (``SCHED_BATCH``, the default) against
``inherit`` (the system's default policy), side by side, for the nodes or for HAProxy.

``python -m bench.cpu_scheduling [--subject nodes|haproxy] [--seconds S] [--rounds R]
[--connections 8,64] [--out DIR]``

For each connection count, R rounds; each round starts a fresh plaintext three-node cluster
(``bench.peers.raftnode``) under each policy in turn and sends it kv.lua's writes with wrk, to
the leader. With ``--subject haproxy`` the nodes keep their default (batch) and the policy is
HAProxy's instead: each round also starts HAProxy on files/haproxy-local.cfg
(``bench.peers.haproxy``, as ``make bench-peers`` does) and the writes go through it. Over the
middle 60% of each run it reads the machine's CPU time (``/proc/stat``) and the context
switches of every thread of the nodes (and HAProxy) (``/proc/<pid>/task/*/status``):
involuntary ones are the preemptions ``SCHED_BATCH`` is meant to spare.

Printed per connection count and policy, medians over the rounds: writes/s, p99, the machine's
CPU microseconds per write and the node threads' context switches per write; then batch's
throughput against inherit's (the median of the rounds' ratios). ``cpu_scheduling.json`` and
``cpu_scheduling.png`` (``cpu_scheduling_haproxy.*`` for HAProxy) go to ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.deps import ensure_commands
from bench.haproxy_cost import WRITES
from bench.peers.haproxy import LocalHaproxy
from bench.peers.raftnode import RaftnodeCluster
from bench.plots import plot_cpu_scheduling, save_results
from bench.procs import ProcessGroup, machine_busy_seconds
from bench.wrkrun import run_wrk_sampled, wrk_argv

POLICIES = ("batch", "inherit")
SUBJECTS = ("nodes", "haproxy")


def context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of every thread of ``pid`` so far (/proc)."""
    voluntary = involuntary = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            lines = (task / "status").read_text().splitlines()
        except FileNotFoundError:  # a thread that just ended
            continue
        for line in lines:
            name, _, value = line.partition(":")
            if name == "voluntary_ctxt_switches":
                voluntary += int(value)
            elif name == "nonvoluntary_ctxt_switches":
                involuntary += int(value)
    return voluntary, involuntary


def run_once(
    procs: ProcessGroup, work: Path, policy: str, args: argparse.Namespace, conns: int
) -> dict[str, float]:
    """One fresh cluster, one wrk run to its leader (through HAProxy with ``--subject
    haproxy``), ``policy`` for the subject: the round's figures."""
    on_nodes = args.subject == "nodes"
    cluster = RaftnodeCluster(work, procs, cpu_scheduling=policy if on_nodes else "batch")
    cluster.start()
    balancer: LocalHaproxy | None = None
    try:
        leader = cluster.wait_leader()
        url = leader.client_url
        pids = list(cluster.pids().values())
        if not on_nodes:
            balancer = LocalHaproxy(work / "haproxy", procs, cluster, cpu_scheduling=policy)
            balancer.start()
            assert balancer.proc is not None
            url = balancer.url
            pids.append(balancer.proc.pid)
        cluster.settle()

        def counters(_wrk_pid: int) -> dict[str, float]:
            switches = [context_switches(pid) for pid in pids]
            return {
                "machine": machine_busy_seconds(),
                "voluntary": float(sum(v for v, _ in switches)),
                "involuntary": float(sum(i for _, i in switches)),
            }

        argv = wrk_argv(url, connections=conns, seconds=args.seconds, script_args=WRITES)
        result, grown = run_wrk_sampled(argv, args.seconds, counters)
    finally:
        if balancer is not None and balancer.proc is not None:
            procs.stop(balancer.proc)
        for node in cluster.nodes:
            cluster.stop_node(node)
    writes = result.ok_per_s * grown["elapsed"]
    return {
        "ok_per_s": result.ok_per_s,
        "p99_ms": result.latency_ms("p99"),
        "machine_us": grown["machine"] / writes * 1e6,
        "voluntary_per_write": grown["voluntary"] / writes,
        "involuntary_per_write": grown["involuntary"] / writes,
    }


def measure(procs: ProcessGroup, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "subject": args.subject,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "rows": [],
    }
    for conns in args.connections:
        runs: dict[str, list[dict[str, float]]] = {p: [] for p in POLICIES}
        for r in range(args.rounds):
            for policy in POLICIES:
                run = run_once(procs, work / f"c{conns}-r{r}-{policy}", policy, args, conns)
                runs[policy].append(run)
                print(
                    f"  {conns:4d} connections, round {r + 1}, {policy:8s} {run['ok_per_s']:8,.0f}"
                    f" ok/s  p99 {run['p99_ms']:6.1f} ms  machine {run['machine_us']:6.1f} us/write"
                    f"  switches/write {run['voluntary_per_write']:.2f} +"
                    f" {run['involuntary_per_write']:.2f} involuntary",
                    flush=True,
                )
        row: dict[str, Any] = {"connections": conns}
        for policy in POLICIES:
            row[policy] = {
                k: statistics.median(run[k] for run in runs[policy]) for k in runs[policy][0]
            }
        ratios = [
            b["ok_per_s"] / i["ok_per_s"]
            for b, i in zip(runs["batch"], runs["inherit"], strict=True)
        ]
        row["ratio"] = statistics.median(ratios)
        row["ratio_per_round"] = [round(x, 3) for x in ratios]
        result["rows"].append(row)
    return result


def report(result: dict[str, Any]) -> None:
    print(f"\nthe policy of: {result['subject']}")
    print(
        f"{'connections':>11}  {'policy':8} {'ok/s':>8} {'p99 ms':>7} {'machine us':>10}"
        f" {'switches':>9} {'involuntary':>11}"
    )
    for row in result["rows"]:
        for policy in POLICIES:
            m = row[policy]
            print(
                f"{row['connections']:>11}  {policy:8} {m['ok_per_s']:>8,.0f} {m['p99_ms']:>7.1f}"
                f" {m['machine_us']:>10.1f} {m['voluntary_per_write']:>9.2f}"
                f" {m['involuntary_per_write']:>11.2f}"
            )
        rounds = ", ".join(f"{x:.3f}" for x in row["ratio_per_round"])
        print(f"{'':>11}  batch / inherit: {row['ratio']:.3f}x (rounds {rounds})")


def _connection_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text!r}"
        ) from None
    if not counts or any(c < 1 or c > 1024 for c in counts):
        raise argparse.ArgumentTypeError(f"connection counts must be 1..1024, got {text!r}")
    return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--subject",
        choices=SUBJECTS,
        default="nodes",
        help="whose policy alternates: the nodes' (default) or HAProxy's, the writes then going"
        " through HAProxy",
    )
    p.add_argument("--seconds", type=float, default=5.0, help="per run (default 5)")
    p.add_argument("--rounds", type=int, default=3, help="batch/inherit pairs (default 3)")
    p.add_argument("--connections", type=_connection_counts, default=[8, 64], help="default 8,64")
    p.add_argument("--out", type=Path, default=Path("build/bench"))
    args = p.parse_args(argv)
    if not 1 <= args.rounds <= 20:
        p.error(f"--rounds must be 1..20, got {args.rounds}")
    if not 2 <= args.seconds <= 120:
        p.error(f"--seconds must be 2..120, got {args.seconds}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_commands(["wrk"])
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="raftnode-sched-") as tmp, ProcessGroup() as procs:
        result = measure(procs, Path(tmp), args)
    report(result)
    name = "cpu_scheduling" if args.subject == "nodes" else "cpu_scheduling_haproxy"
    save_results(args.out, name, result, plot_cpu_scheduling)
    return 0


if __name__ == "__main__":
    sys.exit(main())
