"""A running lab: bring it up, drive its hosts, inject faults, and tear it down.

lab, report = up_lab("smoke", ["n1", "n2", "n3", "lb1", "lb2"])
lab.exec("n1", ["systemctl", "is-system-running"])
lab.isolate("n1"); ...; lab.heal()
destroy_lab("smoke")
"""

from __future__ import annotations

import ipaddress
import subprocess
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from . import faults, process_control
from .addressing import AUTO_SUBNET, DEFAULT_SUBNET, LabHost, LabNetwork, pick_free_subnet
from .bridge import addresses_in_use, create_bridge
from .errors import LabError
from .guest_disk import provision_disk
from .guest_exec import exec_in, nsenter_argv
from .guest_process import GuestFiles, boot, is_running, kill, poweroff, running_init
from .host_requirements import ensure_host_limits, ensure_host_tools, require_root
from .image_build import BuiltImage, ensure_image
from .image_recipe import ImageRecipe
from .inventory import render_inventory
from .locking import exclusive_lock
from .paths import state_root
from .processes import ProcessRef
from .readiness import GuestProbe, failed_units, system_state, wait_until_ready
from .ssh_access import ensure_key, ssh_argv
from .state import (
    LabRecord,
    all_lab_names,
    default_bridge,
    unique_lab_name,
    validate_lab_name,
)
from .teardown import destroy_lab_unlocked

READY_TIMEOUT_S = 180.0
LAB_LOCK_TIMEOUT_S = 600.0
Say = Callable[[str], None]


@dataclass
class UpReport:
    """What `up` did and how long each part took (seconds)."""

    image: BuiltImage | None = None
    provision_s: float = 0.0
    boot_to_ready_s: float = 0.0
    total_s: float = 0.0
    host_ready_s: dict[str, float] = field(default_factory=dict)
    reused: bool = False


@dataclass(frozen=True)
class HostStatus:
    name: str
    group: str
    address: str
    running: bool
    init_pid: int | None
    system_state: str
    blocked: list[str]


def lab_lock(name: str) -> AbstractContextManager[None]:
    return exclusive_lock(
        state_root() / ".locks" / f"{name}.lock", timeout=LAB_LOCK_TIMEOUT_S, what=f"lab {name!r}"
    )


class Lab:
    """Handle on a lab that `up` created; every method works from its state dir."""

    def __init__(self, record: LabRecord) -> None:
        self.record = record

    @classmethod
    def open(cls, name: str) -> Lab:
        record = LabRecord.load(validate_lab_name(name))
        if record is None:
            raise LabError(f"no lab named {name!r} (start one with `up --name {name}`)")
        return cls(record)

    # -- hosts ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.record.name

    @property
    def hosts(self) -> list[LabHost]:
        return list(self.record.hosts)

    def address(self, host: str) -> str:
        return self.record.host(host).address

    def files(self, host: str) -> GuestFiles:
        self.record.host(host)
        return GuestFiles(self.record.host_dir(host))

    def init_of(self, host: str) -> ProcessRef:
        init = running_init(self.files(host))
        if init is None:
            raise LabError(f"{host} is not running (`start {host}` boots it again)")
        return init

    def is_running(self, host: str) -> bool:
        return running_init(self.files(host)) is not None

    # -- commands inside hosts -------------------------------------------------------------------
    def exec(
        self, host: str, command: Sequence[str], *, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside host (nsenter into its namespaces), capturing output."""
        return exec_in(self.init_of(host), command, timeout=timeout, check=check)

    def exec_argv(self, host: str, command: Sequence[str]) -> list[str]:
        """The host command line that runs command inside host (for interactive use)."""
        return nsenter_argv(self.init_of(host), command)

    def ssh_argv(self, host: str, command: Sequence[str]) -> list[str]:
        return ssh_argv(self.record.ssh_key, self.address(host), list(command))

    # -- life cycle ------------------------------------------------------------------------------
    def stop(self, host: str, timeout: float = 60.0) -> bool:
        """Clean poweroff through systemd; False if it did not finish in time and was killed."""
        return poweroff(self.files(host), timeout=timeout)

    def kill(self, host: str) -> None:
        """Hard kill: the guest's whole process tree dies at once, like pulling the plug."""
        kill(self.files(host))

    def start(self, host: str, timeout: float = READY_TIMEOUT_S) -> float:
        """Boot a stopped or killed host again from the same disk; seconds until ready."""
        with lab_lock(self.name):
            return self._start_unlocked([host], timeout)[host]

    def _start_unlocked(self, hosts: list[str], timeout: float) -> dict[str, float]:
        public_key = ensure_key(self.record.ssh_key)
        probes = []
        for name in hosts:
            host = self.record.host(name)
            files = self.files(name)
            if is_running(files):
                kill(files)  # a half-dead nspawn without its init: clear it first
            provision_disk(
                host,
                self.record.hosts,
                self.record.network,
                Path(self.record.image_rootfs),
                self.record.host_dir(name),
                public_key,
            )
            init = boot(files, self.record.machine_name(name), name, self.record.bridge)
            probes.append(GuestProbe(name, host.address, init))
        ready: dict[str, float] = {}

        def note(probe: GuestProbe, seconds: float) -> None:
            ready[probe.name] = seconds
            print(
                f"raftlab: {probe.name} ready ({probe.last_state}) after {seconds:.1f}s", flush=True
            )

        wait_until_ready(probes, self.record.ssh_key, timeout, on_ready=note)
        return ready

    # -- faults ----------------------------------------------------------------------------------
    def _peer_addresses(self, host: str) -> list[str]:
        return [h.address for h in self.record.hosts if h.name != host]

    def isolate(self, host: str) -> None:
        """Drop all traffic between host and every other lab host, the VIP and multicast."""
        blocked = [*self._peer_addresses(host), self.record.network.vip, faults.MULTICAST]
        faults.block(self.init_of(host), blocked)

    def cut(self, a: str, b: str) -> None:
        """Drop traffic between a and b only (rules in both guests)."""
        if a == b:
            raise LabError("cut needs two different hosts")
        faults.block(self.init_of(a), [self.address(b)])
        faults.block(self.init_of(b), [self.address(a)])

    def cut_one_way(self, sender: str, receiver: str) -> None:
        """Drop packets from sender to receiver only: receiver's packets still reach sender.

        The rule sits in receiver's input chain, so sender sees silence, not a send error. TCP
        needs both directions, so new connections between them fail either way; what differs is
        that receiver still gets the bytes sender already had in flight on open connections and
        acts on them, while sender never hears the answers.
        """
        if sender == receiver:
            raise LabError("a one-way cut needs two different hosts")
        faults.block_from(self.init_of(receiver), [self.address(sender)])

    def heal(self, host: str | None = None) -> None:
        """Remove fault rules: all of them, or every rule that involves host."""
        targets = [h.name for h in self.record.hosts] if host is None else [host]
        for name in targets:
            if self.is_running(name):
                faults.clear(self.init_of(name))
        if host is not None:
            address = self.address(host)
            for other in self.record.hosts:
                if other.name != host and self.is_running(other.name):
                    faults.unblock(self.init_of(other.name), [address])

    def pause(self, host: str, target: str) -> None:
        """SIGSTOP a unit's processes (or a guest pid) inside host."""
        process_control.pause(self.init_of(host), target)

    def resume(self, host: str, target: str) -> None:
        process_control.resume(self.init_of(host), target)

    # -- reporting -------------------------------------------------------------------------------
    def status(self) -> list[HostStatus]:
        found = []
        for host in self.record.hosts:
            init = running_init(self.files(host.name))
            state = system_state(init) if init else "stopped"
            blocked = faults.blocked(init) if init else []
            found.append(
                HostStatus(
                    host.name,
                    host.group,
                    host.address,
                    init is not None,
                    init.pid if init else None,
                    state,
                    blocked,
                )
            )
        return found

    def failed_units(self, host: str) -> list[str]:
        return failed_units(self.init_of(host))

    def inventory(self) -> str:
        return render_inventory(self.record)

    def write_inventory(self, path: Path) -> Path:
        path.write_text(self.inventory())
        return path


def allocation_lock() -> AbstractContextManager[None]:
    """Held while a new lab checks or picks its subnet and records it: two `up`s at once
    never take the same subnet or bridge."""
    return exclusive_lock(
        state_root() / ".locks" / "allocate.lock", timeout=LAB_LOCK_TIMEOUT_S, what="subnets"
    )


def _networks_in_use(name: str) -> list[ipaddress.IPv4Network]:
    """Every subnet another lab recorded or an interface of this machine has."""
    taken = [
        record.network.network
        for record in map(LabRecord.load, all_lab_names())
        if record is not None and record.name != name
    ]
    return taken + [ipaddress.IPv4Interface(cidr).network for cidr in addresses_in_use()]


def _check_no_clash(network: LabNetwork, bridge: str, name: str) -> None:
    ours = network.network
    for other_name in all_lab_names():
        other = LabRecord.load(other_name)
        if other is None or other_name == name:
            continue
        if other.network.network.overlaps(ours):
            raise LabError(
                f"lab {other_name!r} already uses {other.subnet}: pick another --subnet "
                f"(`--subnet auto` takes a free one) or `down --name {other_name}`"
            )
        if other.bridge == bridge:
            raise LabError(
                f"lab {other_name!r} already uses bridge {bridge}: pick another --bridge"
            )
    for cidr in addresses_in_use():
        if ipaddress.IPv4Interface(cidr).network.overlaps(ours):
            raise LabError(f"{network.subnet} overlaps {cidr} configured on this machine")


def _claim_subnet(subnet: str, bridge: str, name: str) -> LabNetwork:
    """The lab's network: subnet as given (refusing a clash), or a free one for "auto"."""
    if subnet == AUTO_SUBNET:
        network = LabNetwork(pick_free_subnet(_networks_in_use(name)))
    else:
        network = LabNetwork(subnet)
    _check_no_clash(network, bridge, name)
    return network


def up_lab(
    name: str,
    host_names: list[str],
    *,
    subnet: str = DEFAULT_SUBNET,
    bridge: str | None = None,
    unique_name: bool = False,
    reuse: bool = True,
    ready_timeout: float = READY_TIMEOUT_S,
    recipe: ImageRecipe | None = None,
    keep_on_failure: bool = False,
    say: Say = print,
) -> tuple[Lab, UpReport]:
    """Create and boot the named hosts; on any failure (or ^C) tear down what was made.

    subnet "auto" takes a free /24 from the lab pool; unique_name treats name as a prefix
    and adds a random suffix; reuse=False refuses an existing lab of that name (otherwise
    its stopped hosts are booted again). "auto" plus unique_name give a lab that collides
    with no other (a developer's `make lab`, another test run): read what it got from
    lab.name and lab.record.subnet.
    """
    started = time.monotonic()
    require_root()
    if unique_name:
        name = unique_lab_name(name)
    validate_lab_name(name)
    LabNetwork().hosts(host_names)  # the naming rule, before anything slow
    bridge = bridge or default_bridge(name)
    ensure_host_tools()
    for change in ensure_host_limits():
        say(f"raftlab: raised {change} (guests need it to boot)")
    report = UpReport()
    with lab_lock(name):
        existing = LabRecord.load(name)
        if existing is not None:
            if unique_name or not reuse:
                raise LabError(f"lab {name!r} exists already: pick another name or `down` it")
            lab = Lab(existing)
            same_subnet = subnet in (AUTO_SUBNET, existing.subnet)
            if [h.name for h in existing.hosts] != host_names or not same_subnet:
                have = ",".join(h.name for h in existing.hosts)
                raise LabError(
                    f"lab {name!r} already exists with hosts {have} on {existing.subnet}; "
                    f"`down --name {name}` first"
                )
            stopped = [h.name for h in existing.hosts if not lab.is_running(h.name)]
            if stopped:
                say(f"raftlab: lab {name!r} exists; booting stopped hosts {','.join(stopped)}")
                report.host_ready_s = lab._start_unlocked(stopped, ready_timeout)
            report.reused = True
            report.total_s = time.monotonic() - started
            return lab, report
        if subnet != AUTO_SUBNET:
            _check_no_clash(LabNetwork(subnet), bridge, name)  # fail fast, before the image
        report.image = ensure_image(recipe or ImageRecipe())
        say(
            f"raftlab: image {report.image.digest} "
            f"{'reused from cache' if report.image.cached else 'built'} "
            f"in {report.image.seconds:.1f}s"
        )
        with allocation_lock():
            network = _claim_subnet(subnet, bridge, name)
            hosts = network.hosts(host_names)
            record = LabRecord(name, network.subnet, bridge, str(report.image.rootfs), hosts)
            record.save()  # from here on, `down` can find and undo everything
        say(f"raftlab: lab {name!r} on {network.subnet}, bridge {bridge}")
        lab = Lab(record)
        try:
            step = time.monotonic()
            public_key = ensure_key(record.ssh_key)
            create_bridge(bridge, network.controller_address, network.prefixlen)
            for host in hosts:
                provision_disk(
                    host,
                    hosts,
                    network,
                    report.image.rootfs,
                    record.host_dir(host.name),
                    public_key,
                )
            report.provision_s = time.monotonic() - step
            say(f"raftlab: bridge {bridge}, {len(hosts)} disks ready in {report.provision_s:.1f}s")
            step = time.monotonic()
            report.host_ready_s = lab._start_unlocked(host_names, ready_timeout)
            report.boot_to_ready_s = time.monotonic() - step
        except BaseException:
            if keep_on_failure:
                say(f"raftlab: up failed; lab {name!r} kept for inspection (`down --name {name}`)")
            else:
                say(f"raftlab: up failed; destroying lab {name!r}")
                destroy_lab_unlocked(name, say)
            raise
    report.total_s = time.monotonic() - started
    say(
        f"raftlab: {len(hosts)} hosts ready in {report.boot_to_ready_s:.1f}s after boot "
        f"(total up {report.total_s:.1f}s)"
    )
    return lab, report


def destroy_lab(name: str, say: Say = print) -> bool:
    """Tear the lab down completely; idempotent; False if there was nothing to destroy."""
    require_root()
    with lab_lock(name):
        return destroy_lab_unlocked(validate_lab_name(name), say)
