"""What writes through HAProxy cost when the balancer shares the machine with the nodes: the CPU
each process spends per request, direct to the leader and through HAProxy, side by side. It
explains `make bench-peers`' row "writes, HAProxy against direct".

``python -m bench.haproxy_cost [--seconds S] [--rounds R] [--connections N] [--out DIR]``

One plaintext three-node cluster (``bench.peers.raftnode``) and HAProxy with
``files/haproxy-local.cfg`` (``bench.peers.haproxy``), as ``make bench-peers`` runs them. wrk
sends kv.lua's writes, alternating between the leader's client port and HAProxy's, R rounds.
Over the middle 60% of each run it reads the CPU time of the leader, the followers, HAProxy and
wrk (``/proc/<pid>/stat``), of the whole machine (``/proc/stat``: what the kernel does for the
sockets too, charged to no process), and the leader's ``raftnode_persist_batch_entries``.

Printed per side, medians over the rounds: throughput, CPU microseconds per request of each
part and of the machine, how busy the machine was, and the entries in the leader's average
batch. Then the throughput ratio through HAProxy against direct (the median of the rounds'
ratios), beside what the CPU per write alone allows: direct's over HAProxy's, of the leader
(when its one event loop is the bound) and of the machine (when every core is busy).
``haproxy_cost.json`` and ``haproxy_cost.png`` go to ``--out``.

``--haproxy-cpu N`` gives HAProxy CPU N alone and the nodes and wrk the other CPUs (affinity),
as ``site.yml`` gives the balancer hosts of their own: what HAProxy then adds is its latency,
not CPU taken from the nodes. Without it every process shares every CPU, as in ``bench-peers``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.deps import ensure_commands
from bench.peers.haproxy import LocalHaproxy
from bench.peers.raftnode import RaftnodeCluster
from bench.plots import plot_haproxy_cost, save_results
from bench.procs import ProcessGroup, cpu_seconds, machine_busy_seconds
from bench.wrkrun import run_wrk_sampled, wrk_argv

SIDES = ("direct", "haproxy")
PARTS = ("leader", "followers", "haproxy", "wrk", "machine")
WRITES = {
    "dialect": "raftnode",
    "mode": "write",
    "keys": "1000",
    "value_bytes": "100",
    "prefix": "bench-",
}


def batch_counters(metrics_url: str) -> tuple[float, float]:
    """The leader's ``raftnode_persist_batch_entries`` histogram: (sum, count) so far."""
    with urllib.request.urlopen(metrics_url, timeout=2.0) as answer:
        text = answer.read().decode()
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("raftnode_persist_batch_entries_sum", "raftnode_persist_batch_entries_count"):
            found[name.rsplit("_", 1)[1]] = float(value)
    if len(found) != 2:
        raise RuntimeError(f"{metrics_url}: no raftnode_persist_batch_entries histogram")
    return found["sum"], found["count"]


def one_run(
    url: str, pids: dict[str, list[int]], metrics_url: str, seconds: float, connections: int
) -> dict[str, float]:
    """wrk's writes to ``url``: ok/s, CPU microseconds per request of each part (``pids``:
    part -> its processes) and of the machine, the machine's busy fraction, and the entries
    in the leader's average persisted batch (from ``metrics_url``)."""
    argv = wrk_argv(url, connections=connections, seconds=seconds, script_args=WRITES)

    def counters(wrk: int) -> dict[str, float]:
        now = {part: sum(cpu_seconds(pid) for pid in ids) for part, ids in pids.items()}
        entries, batches = batch_counters(metrics_url)
        now.update(wrk=cpu_seconds(wrk), entries=entries, batches=batches)
        return {**now, "machine": machine_busy_seconds()}

    result, sample = run_wrk_sampled(argv, seconds, counters)
    ok_per_s = result.ok_per_s
    requests = ok_per_s * sample["elapsed"]
    run = {"ok_per_s": ok_per_s}
    for part in PARTS:
        run[f"{part}_us"] = sample.get(part, 0.0) / requests * 1e6
    run["machine_busy"] = sample["machine"] / (sample["elapsed"] * (os.cpu_count() or 1))
    run["leader_batch"] = sample["entries"] / max(sample["batches"], 1.0)
    return run


def summarize(runs: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Each side's medians, the measured ratio, and the ratios the CPU per write allows."""

    def med(side: str, name: str) -> float:
        return statistics.median(r[name] for r in runs[side])

    def per_round(measure: Callable[[dict[str, float], dict[str, float]], float]) -> list[float]:
        pairs = zip(runs["haproxy"], runs["direct"], strict=True)
        return [round(measure(h, d), 3) for h, d in pairs]

    names = ["ok_per_s", "machine_busy", "leader_batch", *(f"{part}_us" for part in PARTS)]
    sides = {side: {name: med(side, name) for name in names} for side in SIDES}
    ratios = per_round(lambda h, d: h["ok_per_s"] / d["ok_per_s"])
    # What each bound alone allows: the leader's one event loop, or every core of the machine.
    leader_bound = per_round(lambda h, d: d["leader_us"] / h["leader_us"])
    machine_bound = per_round(lambda h, d: d["machine_us"] / h["machine_us"])
    return {
        **sides,
        "ratio": statistics.median(ratios),
        "ratio_per_round": ratios,
        "leader_bound_ratio": statistics.median(leader_bound),
        "machine_bound_ratio": statistics.median(machine_bound),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="per run (default 10)")
    p.add_argument("--rounds", type=int, default=3, help="direct/HAProxy pairs (default 3)")
    p.add_argument("--connections", type=int, default=64, help="wrk's (default 64)")
    p.add_argument(
        "--haproxy-cpu",
        type=int,
        default=None,
        help="HAProxy alone on this CPU, the nodes and wrk on the others (default: all share)",
    )
    p.add_argument("--out", type=Path, default=Path("build/bench"))
    args = p.parse_args(argv)
    if args.rounds < 1 or args.seconds < 2 or args.connections < 1:
        p.error("--rounds and --connections must be >= 1 and --seconds >= 2")
    if args.haproxy_cpu is not None:
        try:
            cpus_left(args.haproxy_cpu)
        except ValueError as e:
            p.error(str(e))
    return args


def cpus_left(haproxy_cpu: int) -> set[int]:
    """The CPUs this process may use besides ``haproxy_cpu``; ValueError, naming them, unless
    it may use ``haproxy_cpu`` and at least one other."""
    allowed = os.sched_getaffinity(0)
    others = allowed - {haproxy_cpu}
    if haproxy_cpu not in allowed or not others:
        raise ValueError(
            f"--haproxy-cpu {haproxy_cpu}: this process may use CPUs {sorted(allowed)}; "
            "HAProxy needs one of them and the nodes at least one other"
        )
    return others


@contextlib.contextmanager
def cpus_apart(haproxy_cpu: int | None) -> Iterator[set[int] | None]:
    """With ``haproxy_cpu``, this process (so every process it starts: the nodes, HAProxy, wrk)
    runs on the other CPUs it may use, which are yielded; HAProxy is moved to its CPU once
    started (``give_cpu``). The affinity is restored on the way out. Without: nothing changes,
    and None is yielded."""
    if haproxy_cpu is None:
        yield None
        return
    allowed = os.sched_getaffinity(0)
    others = cpus_left(haproxy_cpu)
    os.sched_setaffinity(0, others)
    try:
        yield others
    finally:
        os.sched_setaffinity(0, allowed)


def give_cpu(pid: int, cpu: int) -> None:
    """Run ``pid`` (every thread of it) on ``cpu`` alone."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {cpu})


def measure(procs: ProcessGroup, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    cluster = RaftnodeCluster(work / "raftnode", procs)
    cluster.start()
    balancer = LocalHaproxy(work / "haproxy", procs, cluster)
    balancer.start()
    assert balancer.proc is not None
    if args.haproxy_cpu is not None:
        give_cpu(balancer.proc.pid, args.haproxy_cpu)
    leader = cluster.wait_leader()
    node_pids = cluster.pids()
    pids = {
        "leader": [node_pids[leader.ports.node_id]],
        "followers": [pid for nid, pid in node_pids.items() if nid != leader.ports.node_id],
        "haproxy": [balancer.proc.pid],
    }
    urls = {"direct": leader.client_url, "haproxy": balancer.url}
    metrics_url = leader.health_url + "/metrics"
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    for rnd in range(args.rounds):
        for side in SIDES:
            cluster.settle()
            if cluster.wait_leader().ports.node_id != leader.ports.node_id:
                raise RuntimeError("the leader changed during the benchmark: rerun it")
            run = one_run(urls[side], pids, metrics_url, args.seconds, args.connections)
            runs[side].append(run)
            print(
                f"  round {rnd + 1} {side:<8} {run['ok_per_s']:8,.0f} ok/s  us/req: "
                + "  ".join(f"{part} {run[f'{part}_us']:5.1f}" for part in PARTS)
                + f"  machine busy {run['machine_busy']:.0%}"
                + f"  leader batch {run['leader_batch']:.1f}",
                flush=True,
            )
    return {"runs": runs, **summarize(runs)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_commands(["wrk", "haproxy"])
    args.out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="haproxy-cost-") as tmp,
        cpus_apart(args.haproxy_cpu) as node_cpus,
        ProcessGroup() as procs,
    ):
        if node_cpus is not None:
            print(f"HAProxy on CPU {args.haproxy_cpu}; the nodes and wrk on {sorted(node_cpus)}")
        result = measure(procs, Path(tmp), args)
    heading = "  ".join(f"{p + ' us':>12}" for p in PARTS)
    print(f"\n{'':<8} {'ok/s':>8}  {heading}  busy  leader batch")
    for side in SIDES:
        s = result[side]
        print(
            f"{side:<8} {s['ok_per_s']:8,.0f}  "
            + "  ".join(f"{s[f'{p}_us']:12.1f}" for p in PARTS)
            + f"  {s['machine_busy']:4.0%}  {s['leader_batch']:12.1f}"
        )
    print(
        f"\nthrough HAProxy / direct: {result['ratio']:.3f}x (rounds "
        f"{tuple(result['ratio_per_round'])}). What the CPU per write alone allows: "
        f"{result['leader_bound_ratio']:.3f}x when the leader's event loop is the bound, "
        f"{result['machine_bound_ratio']:.3f}x when every core is busy"
    )
    result.update(
        connections=args.connections,
        seconds=args.seconds,
        rounds=args.rounds,
        haproxy_cpu=args.haproxy_cpu,
    )
    save_results(args.out, "haproxy_cost", result, plot_haproxy_cost)
    return 0


if __name__ == "__main__":
    sys.exit(main())
