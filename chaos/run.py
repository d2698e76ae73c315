"""``make chaos``: a lab of its own, site.yml, workload and nemesis together, the checks, a report.

    python -m chaos.run --duration 150 --nemesis all --out build/chaos
    python -m chaos.run --lab raftlab --duration 60      # an existing deployed lab, kept
    python -m chaos.run --workload register,set,append   # list-append transactions too
    python -m chaos.run --check build/chaos/RUN/history.jsonl   # check a recorded history again
    python -m chaos.run --failpoints reads-skip-read-index   # a broken cluster: must FAIL

Workloads (``--workload``, a comma list; default ``register,set``): ``register`` and ``set``
are the mixed register/set clients of ``chaos.workload`` (either name runs them),
``append`` the list-append transactions of ``chaos.list_append``, checked by ``chaos.elle``.

Writes build/chaos/<run>/history.jsonl, summary.json, summary.txt and PNGs; exits 1 on any
anomaly, lost, duplicated or unexpected write, or a check that could not finish. The lab it
booted is destroyed at the end, on failure too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from raftnode.failpoints import UnknownFailpoint
from raftnode.failpoints import parse as parse_failpoints

from .broken_node import break_nodes
from .elle import check_list_append
from .history import SET_KINDS, Operation, read_history, write_history
from .linearizability import check
from .list_append import AppendConfig, run_list_append
from .nemesis import BALANCER_PORT, LabHosts, Nemesis, fault_kinds, lab_hosts
from .report import passed, summarize, summary_text, write_report
from .schedule import COMBINE_SHARE
from .set_checker import check_set
from .stale_reads import check_stale_reads
from .workload import Recorder, WorkloadConfig, run_workload

REPO = Path(__file__).resolve().parent.parent
NODE_COUNTS = (3, 5)
# Lease reads rely on clocks running at similar rates: the lab's guests share the host's clock,
# so they are checked as linearizable here. Stale reads get the weaker checks only.
CHECKED_AS_LINEARIZABLE = frozenset({None, "linearizable", "lease"})
WORKLOADS = ("register", "set", "append")


def workloads(text: str) -> frozenset[str]:
    """The comma list of ``--workload``; ValueError naming an unknown one."""
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    unknown = sorted(names - set(WORKLOADS))
    if unknown or not names:
        raise ValueError(
            f"--workload {text!r}: unknown {unknown or 'empty'}; use a comma list of "
            + ", ".join(WORKLOADS)
        )
    return names


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m chaos.run", description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=150.0, help="seconds of workload")
    p.add_argument(
        "--nemesis",
        default="all",
        help="all, or groups: kill,pause,partition,disk,lb,transfer,restart,membership "
        "(or single kinds); 'none' for no faults. all leaves the opt-in kinds out "
        "(chaos.nemesis.OPT_IN)",
    )
    p.add_argument(
        "--workload",
        default="register,set",
        help="comma list of register, set, append (list-append transactions); default register,set",
    )
    p.add_argument(
        "--nodes",
        type=int,
        choices=NODE_COUNTS,
        default=3,
        help="Raft nodes in the booted lab (n1..nN, beside lb1 and lb2); default 3",
    )
    p.add_argument(
        "--combine",
        type=_share,
        default=0.0,
        help="share of rounds that run two faults at once (0..1; membership rounds always "
        f"do); default 0, {COMBINE_SHARE} for combined schedules",
    )
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--keys", type=int, default=3)
    p.add_argument("--seed", type=int, default=int(time.time()))
    p.add_argument("--out", type=Path, default=REPO / "build" / "chaos")
    p.add_argument("--lab", help="use this existing, deployed lab (not booted, not destroyed)")
    p.add_argument("--keep-lab", action="store_true", help="leave the booted lab running")
    p.add_argument("--check", type=Path, help="only check this history.jsonl and report")
    p.add_argument(
        "--failpoints",
        default="",
        help="restart every node with these raftnode failpoints (raftnode.failpoints.KNOWN) "
        "before the workload: a deliberately broken cluster, whose run must report anomalies",
    )
    return p


def _sh(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> None:
    print("chaos: " + " ".join(argv), flush=True)
    subprocess.run(argv, check=True, timeout=timeout, cwd=REPO, env=env)


def lab_host_list(nodes: int) -> str:
    """The ``--hosts`` of ``lab.raftlab up``: n1..nN and the balancer pair."""
    if nodes not in NODE_COUNTS:
        raise ValueError(f"--nodes must be one of {NODE_COUNTS}, got {nodes}")
    return ",".join([f"n{i}" for i in range(1, nodes + 1)] + ["lb1", "lb2"])


def node_ids_inventory(nodes: int) -> str:
    """Each raft host's ``raftnode_node_id`` (inventories/lab/hosts.yml names n1..n3 only)."""
    lines = ["all:", "  children:", "    raft:", "      hosts:"]
    lines += [f"        n{i}: {{raftnode_node_id: {i}}}" for i in range(1, nodes + 1)]
    return "\n".join(lines) + "\n"


def boot_and_deploy(run_dir: Path, nodes: int = 3) -> str:
    name_file = run_dir / "lab-name"
    inventory = run_dir / "inventory.yml"
    node_ids = run_dir / "node-ids.yml"
    node_ids.write_text(node_ids_inventory(nodes))
    try:
        _sh(
            [
                "python3",
                "-m",
                "lab.raftlab",
                "up",
                "--name",
                "chaos",
                "--unique-name",
                "--name-file",
                str(name_file),
                "--hosts",
                lab_host_list(nodes),
                "--subnet",
                "auto",
                "--inventory",
                str(inventory),
            ],
            timeout=600,
        )
    finally:
        name = name_file.read_text().strip() if name_file.exists() else ""
    bin_dir = Path(sys.executable).parent
    env = os.environ | {
        "RAFTLAB_NAME": name,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
    }
    _sh(
        [
            str(bin_dir / "ansible-playbook"),
            "-i",
            "inventories/lab",
            "-i",
            str(inventory),
            "-i",
            str(node_ids),
            "site.yml",
        ],
        timeout=900,
        env=env,
    )
    return name


def destroy(name: str) -> None:
    if name:
        subprocess.run(
            ["python3", "-m", "lab.raftlab", "--name", name, "down"],
            cwd=REPO,
            timeout=300,
            check=False,
        )


async def record(
    hosts: LabHosts, args: argparse.Namespace, run_id: str, recorder: Recorder
) -> list[Operation]:
    kinds = [] if args.nemesis == "none" else fault_kinds(args.nemesis)
    nemesis = Nemesis(hosts, kinds, recorder, seed=args.seed, combine_share=args.combine)
    await nemesis.leader(timeout=60.0)
    config = WorkloadConfig(
        endpoints=tuple(hosts.endpoints),
        run_id=run_id,
        clients=args.clients,
        keys=args.keys,
        duration=args.duration,
        client_library=None,  # half through raftnode.client, half raw HTTP
        seed=args.seed,
    )
    chosen = workloads(args.workload)
    jobs = []
    if chosen & {"register", "set"}:
        jobs.append(run_workload(config, recorder))
    if "append" in chosen:
        append = AppendConfig(
            endpoints=config.endpoints,
            run_id=run_id,
            clients=max(1, args.clients // 2),
            keys=args.keys,
            duration=args.duration,
            max_ops=min(3, args.keys),
            idempotent_share=0.5,
            client_library=None,  # half through raftnode.client, half raw HTTP
            seed=args.seed,
        )
        jobs.append(run_list_append(append, recorder))
    work = asyncio.ensure_future(asyncio.gather(*jobs))
    try:
        if kinds:
            await nemesis.run(args.duration)
        await work
    finally:
        if not work.done():
            work.cancel()
    return recorder.operations


FAILPOINTS_FILE = "failpoints"
"""In the run directory when the nodes ran broken on purpose: their failpoints, one a line."""


def balancer_endpoints(operations: list[Operation]) -> frozenset[str]:
    """The endpoints in the history that are the balancers' VIP (its port), not one node."""
    endpoints = {op.endpoint for op in operations if op.endpoint}
    return frozenset(e for e in endpoints if urlsplit(e).port == BALANCER_PORT)


def check_and_report(operations: list[Operation], run_dir: Path) -> bool:
    started = time.monotonic()
    failpoints_file = run_dir / FAILPOINTS_FILE
    failpoints = failpoints_file.read_text().split() if failpoints_file.exists() else []
    lin = check(operations, read_consistencies=CHECKED_AS_LINEARIZABLE)
    # Each check runs on what the history holds: an append-only run has no set to read back.
    has_set = any(op.kind in SET_KINDS for op in operations)
    sets = [check_set(operations)] if has_set else []
    stale = check_stale_reads(operations, frozenset({"stale"}), balancer_endpoints(operations))
    has_txns = any(op.kind == "txn" for op in operations)
    elle = check_list_append(operations) if has_txns else None
    summary = summarize(operations, lin, sets, stale, elle)
    summary["check_seconds"] = round(time.monotonic() - started, 1)
    if failpoints:
        summary["failpoints"] = failpoints
    paths = write_report(run_dir, operations, summary)
    print(summary_text(summary))
    print("chaos: wrote " + ", ".join(str(p) for p in paths))
    return passed(summary)


def _share(text: str) -> float:
    """``--combine``: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--combine takes a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"--combine must be 0..1, got {text!r}")
    return value


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM/SIGHUP (an interrupted make) unwind like ^C, so the lab is still destroyed.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    if args.check:
        ops = read_history(args.check)
        return 0 if check_and_report(ops, args.check.parent) else 1
    if args.nemesis != "none":
        fault_kinds(args.nemesis)  # a bad NEMESIS fails before any lab exists
    try:
        workloads(args.workload)
        failpoints = parse_failpoints(args.failpoints)
    except (ValueError, UnknownFailpoint) as e:
        print(f"chaos: {e}", file=sys.stderr)
        return 2
    if not args.lab and not (sys.platform.startswith("linux") and os.geteuid() == 0):
        # Like make test-lab: lab hosts need root on Linux (bridge, nspawn); said, not hidden.
        print("chaos: SKIPPED: the lab needs root on Linux (bridge, systemd-nspawn)")
        return 0
    run_id = time.strftime("%Y%m%d-%H%M%S")
    run_dir = args.out / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    name = args.lab or ""
    booted = not args.lab
    try:
        if booted:
            name = boot_and_deploy(run_dir, args.nodes)
        hosts = asyncio.run(lab_hosts(name))
        if failpoints:
            (run_dir / FAILPOINTS_FILE).write_text("\n".join(sorted(failpoints)) + "\n")
            asyncio.run(break_nodes(hosts, failpoints))
        recorder = Recorder()
        try:
            asyncio.run(record(hosts, args, run_id, recorder))
        finally:
            # Written even when the run broke off: what was recorded is still evidence.
            write_history(run_dir / "history.jsonl", recorder.operations)
            print(f"chaos: {len(recorder.operations)} records in {run_dir / 'history.jsonl'}")
    finally:
        if booted and not args.keep_lab:
            destroy(name)
    return 0 if check_and_report(read_history(run_dir / "history.jsonl"), run_dir) else 1


if __name__ == "__main__":
    sys.exit(main())
