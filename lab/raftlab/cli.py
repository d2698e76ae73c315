"""`python3 -m lab.raftlab <command>`: the lab from a shell, Make or Ansible."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from .addressing import AUTO_SUBNET, DEFAULT_SUBNET, SUBNET_POOL
from .errors import LabError
from .host_requirements import ensure_host_tools, require_root
from .image_build import ensure_image
from .image_recipe import ImageRecipe
from .inventory import molecule_instances
from .lab import READY_TIMEOUT_S, Lab, destroy_lab, up_lab
from .state import all_lab_names, unique_lab_name

DEFAULT_LAB = "raftlab"


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM/SIGHUP unwind like ^C, so `up` tears down what it made before exiting.
    raise KeyboardInterrupt(f"signal {signum}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m lab.raftlab",
        description="systemd-nspawn test hosts for raftnode (run as root)",
    )
    parser.add_argument("--name", default=DEFAULT_LAB, help="lab name (default: %(default)s)")
    # --name is accepted before or after the command: `--name x up` and `up --name x`.
    named = argparse.ArgumentParser(add_help=False)
    named.add_argument("--name", default=argparse.SUPPRESS, help="lab name")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    original_add = sub.add_parser

    def add_parser(name: str, **kwargs: object) -> argparse.ArgumentParser:
        return original_add(name, parents=[named], **kwargs)  # type: ignore[arg-type]

    sub.add_parser = add_parser  # type: ignore[method-assign]

    image = sub.add_parser("image", help="build the guest image, or reuse the cached one")
    image.add_argument("--rebuild", action="store_true", help="build even if cached")

    up = sub.add_parser("up", help="create and boot hosts; waits until SSH answers")
    up.add_argument("--hosts", default="n1,n2,n3,lb1,lb2", help="comma list (default: %(default)s)")
    up.add_argument(
        "--subnet",
        default=DEFAULT_SUBNET,
        help=f"a private /24 or /25, or '{AUTO_SUBNET}': the first free /24 of {SUBNET_POOL} "
        "(never the default, %(default)s)",
    )
    up.add_argument(
        "--unique-name",
        action="store_true",
        help="take --name as a prefix and add a random suffix; the name is printed "
        "(and written to --name-file)",
    )
    up.add_argument("--name-file", help="write the lab's name to this file once it is chosen")
    up.add_argument("--bridge", help="bridge name (default: br-<name>)")
    up.add_argument("--timeout", type=float, default=READY_TIMEOUT_S, help="ready wait, seconds")
    up.add_argument(
        "--keep-on-failure", action="store_true", help="leave a failed lab for debugging"
    )
    up.add_argument("--inventory", help="also write the Ansible inventory to this file")

    sub.add_parser("down", help="destroy the lab: guests, disks, bridge, state (idempotent)")
    sub.add_parser("status", help="hosts, addresses, systemd state, blocked peers")
    sub.add_parser("list", help="names of the labs on this machine")
    inventory = sub.add_parser("inventory", help="print an Ansible YAML inventory for the lab")
    inventory.add_argument(
        "--format",
        choices=("yaml", "molecule"),
        default="yaml",
        help="yaml: Ansible inventory; molecule: JSON list for Molecule's instance_config.yml",
    )

    exe = sub.add_parser("exec", help="run a command inside a host: exec HOST -- CMD...")
    exe.add_argument("host")
    exe.add_argument("cmd", nargs=argparse.REMAINDER)
    exe.add_argument("--timeout", type=float, default=600.0)

    for name, help_text in (
        ("stop", "clean poweroff of a host"),
        ("kill", "hard kill of a host's whole process tree"),
        ("start", "boot a stopped or killed host again (same disk)"),
        ("isolate", "drop all traffic between a host and the other lab hosts"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("host")
    cut = sub.add_parser("cut", help="drop traffic between two hosts")
    cut.add_argument("a")
    cut.add_argument("b")
    cut.add_argument(
        "--one-way",
        action="store_true",
        help="drop only the packets from A to B (B's packets still reach A)",
    )
    heal = sub.add_parser("heal", help="remove fault rules (all, or those involving HOST)")
    heal.add_argument("host", nargs="?")
    for name, help_text in (
        ("pause", "SIGSTOP a unit's processes (or a guest pid) in a host"),
        ("resume", "SIGCONT what pause stopped"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("host")
        cmd.add_argument("unit", help="systemd unit name (raftnode, haproxy.service) or guest pid")
    return parser


def _cmd_image(args: argparse.Namespace) -> int:
    ensure_host_tools()
    built = ensure_image(ImageRecipe(), rebuild=args.rebuild)
    how = "cached" if built.cached else "built"
    print(f"raftlab: image {built.digest} {how} in {built.seconds:.1f}s: {built.rootfs}")
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    name = args.name
    if args.unique_name:
        name = unique_lab_name(args.name)
    if args.name_file:
        # Written before anything is created, so a caller can always `down` what it started.
        Path(args.name_file).write_text(name + "\n")
    print(f"raftlab: lab name {name}", flush=True)
    lab, report = up_lab(
        name,
        hosts,
        subnet=args.subnet,
        bridge=args.bridge,
        reuse=not args.unique_name,
        ready_timeout=args.timeout,
        keep_on_failure=args.keep_on_failure,
    )
    if args.inventory:
        lab.write_inventory(Path(args.inventory))
        print(f"raftlab: inventory written to {args.inventory}")
    image = report.image
    figures = {
        "lab": lab.name,
        "subnet": lab.record.subnet,
        "reused": report.reused,
        "image_s": round(image.seconds, 1) if image else None,
        "image_cached": image.cached if image else None,
        "provision_s": round(report.provision_s, 1),
        "boot_to_ready_s": round(report.boot_to_ready_s, 1),
        "total_s": round(report.total_s, 1),
    }
    print("raftlab: timings " + json.dumps(figures))
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    started = time.monotonic()
    if destroy_lab(args.name):
        print(f"raftlab: lab {args.name!r} destroyed in {time.monotonic() - started:.1f}s")
    else:
        print(f"raftlab: no lab {args.name!r}; nothing to do")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    lab = Lab.open(args.name)
    rec = lab.record
    print(f"lab {rec.name}: subnet {rec.subnet} bridge {rec.bridge} vip {rec.network.vip}")
    print(f"{'host':8} {'group':7} {'address':12} {'pid':>8} {'state':10} blocked")
    for st in lab.status():
        pid = str(st.init_pid) if st.init_pid else "-"
        blocked = ",".join(st.blocked) or "-"
        print(f"{st.name:8} {st.group:7} {st.address:12} {pid:>8} {st.system_state:10} {blocked}")
    return 0


def _cmd_exec(args: argparse.Namespace) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise LabError("usage: exec HOST -- CMD [ARGS...]")
    argv = Lab.open(args.name).exec_argv(args.host, cmd)
    try:
        return subprocess.run(argv, timeout=args.timeout, check=False).returncode
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"command in {args.host} timed out after {args.timeout:.0f}s") from exc


def _simple(args: argparse.Namespace) -> int:
    lab = Lab.open(args.name)
    command = args.command
    if command == "stop":
        clean = lab.stop(args.host)
        print(f"raftlab: {args.host} {'powered off' if clean else 'killed after poweroff timeout'}")
    elif command == "kill":
        lab.kill(args.host)
        print(f"raftlab: {args.host} killed")
    elif command == "start":
        seconds = lab.start(args.host)
        print(f"raftlab: {args.host} started, ready in {seconds:.1f}s")
    elif command == "isolate":
        lab.isolate(args.host)
        print(f"raftlab: {args.host} isolated from the other lab hosts")
    elif command == "cut" and args.one_way:
        lab.cut_one_way(args.a, args.b)
        print(f"raftlab: packets {args.a} -> {args.b} dropped ({args.b} -> {args.a} flow)")
    elif command == "cut":
        lab.cut(args.a, args.b)
        print(f"raftlab: link {args.a} <-> {args.b} cut")
    elif command == "heal":
        lab.heal(args.host)
        print(f"raftlab: healed {args.host or 'all hosts'}")
    elif command == "pause":
        lab.pause(args.host, args.unit)
        print(f"raftlab: {args.unit} on {args.host} paused (SIGSTOP)")
    elif command == "resume":
        lab.resume(args.host, args.unit)
        print(f"raftlab: {args.unit} on {args.host} resumed (SIGCONT)")
    elif command == "inventory" and args.format == "molecule":
        print(json.dumps(molecule_instances(lab.record), indent=2))
    elif command == "inventory":
        sys.stdout.write(lab.inventory())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        if args.command == "list":
            print("\n".join(all_lab_names()))
            return 0
        require_root()
        handlers = {"image": _cmd_image, "up": _cmd_up, "down": _cmd_down, "status": _cmd_status}
        handlers["exec"] = _cmd_exec
        return handlers.get(args.command, _simple)(args)
    except LabError as exc:
        print(f"raftlab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("raftlab: interrupted", file=sys.stderr)
        return 130
