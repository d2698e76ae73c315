"""Failover benchmark: kill -9 the leader N times, measure until writes succeed again.

Runs a local three-node cluster (free loopback ports, a temporary data directory), then N
times: wait until all three nodes are up and caught up, SIGKILL the leader, and time from the
kill until a write through any surviving node is acknowledged (the client retries round-robin
over the survivors with a short per-request timeout). The killed node is restarted before the
next round. Prints every round and the median and max.

With ``--through-lb`` the writes go through a local HAProxy running ``files/haproxy-local.cfg``
(what ``make start-lb`` runs) with the ports rewritten to the benchmark's free ones, so the time
includes HAProxy noticing the old leader's death and the new leader's ``/primary``.

    python -m bench.failover --kills 10 [--through-lb]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from raftnode.devcluster import (
    LocalNode,
    NodePorts,
    free_ports,
    http_status,
    start_node,
    wait_for_leader,
    write_configs,
)

REPO = Path(__file__).resolve().parent.parent
HAPROXY_LOCAL_CFG = REPO / "files" / "haproxy-local.cfg"


def haproxy_config(
    nodes: list[LocalNode], lb_port: int, stats_port: int, template: Path = HAPROXY_LOCAL_CFG
) -> str:
    """``template`` (``files/haproxy-local.cfg``) with the seed's ports (client 808N, health
    1000N, HAProxy 8080, stats 8404) replaced by the benchmark's."""
    by_id = {n.ports.node_id: n.ports for n in nodes}
    cfg = re.sub(
        r"bind (\*|127\.0\.0\.1):8080\b", f"bind 127.0.0.1:{lb_port}", template.read_text()
    )
    cfg = re.sub(r"127\.0\.0\.1:808([1-9])", lambda m: f"127.0.0.1:{by_id[int(m[1])].client}", cfg)
    cfg = re.sub(r"check port 1000(\d)", lambda m: f"check port {by_id[int(m[1])].health}", cfg)
    cfg = cfg.replace("bind 127.0.0.1:8404", f"bind 127.0.0.1:{stats_port}")
    if re.search(r":(808\d|8404)\b|port 1000\d\b", re.sub(r"#.*", "", cfg)):
        raise RuntimeError(f"{template} has a seed port the benchmark did not rewrite")
    return cfg


def write_status(url: str, key: str, value: str, timeout: float) -> str:
    """ "200" on success, else the status code or the client-side error, for the report."""
    body = json.dumps({"key": key, "value": value}).encode()
    req = urllib.request.Request(url + "/kv", data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return str(resp.status)
    except urllib.error.HTTPError as e:
        try:
            return f"{e.code} {json.loads(e.read())['error']}"
        except (ValueError, KeyError, TypeError):
            return str(e.code)
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        return "timeout" if "timed out" in str(reason) else type(reason).__name__


def wait_until(what: str, predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--request-timeout", type=float, default=1.0)
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument(
        "--through-lb",
        action="store_true",
        help="write through a local HAProxy running files/haproxy-local.cfg",
    )
    parser.add_argument(
        "--lb-config",
        type=Path,
        default=HAPROXY_LOCAL_CFG,
        help="with --through-lb: the HAProxy configuration to run (seed ports, rewritten)",
    )
    args = parser.parse_args(argv)

    base = Path(tempfile.mkdtemp(prefix="raftnode-bench-"))
    ports = free_ports(11)
    nodes = write_configs(
        base, [NodePorts(i + 1, *ports[3 * i : 3 * i + 3]) for i in range(3)], log_level="info"
    )
    procs: dict[int, subprocess.Popen[bytes]] = {}
    lb: subprocess.Popen[bytes] | None = None
    lb_url = f"http://127.0.0.1:{ports[9]}"
    times: list[float] = []
    try:
        for n in nodes:
            procs[n.ports.node_id] = start_node(n)
        if args.through_lb:
            cfg = base / "haproxy.cfg"
            cfg.write_text(haproxy_config(nodes, ports[9], ports[10], args.lb_config))
            lb = subprocess.Popen(["haproxy", "-db", "-q", "-f", str(cfg)], start_new_session=True)
        for round_ in range(1, args.kills + 1):
            wait_until(
                "all nodes caught up",
                lambda: (
                    wait_for_leader(nodes, 0.2) is not None
                    and sum(http_status(n.health_url + "/replica") == 200 for n in nodes) == 2
                ),
                30,
            )
            leader = wait_for_leader(nodes, 10)
            assert leader is not None
            if lb is not None:
                wait_until(
                    "a write through HAProxy",
                    lambda: write_status(lb_url, "bench-warm", "x", args.request_timeout) == "200",
                    30,
                )
            lid = leader.ports.node_id
            survivors = [n for n in nodes if n is not leader]
            procs[lid].send_signal(signal.SIGKILL)
            killed = time.monotonic()
            i = 0
            failures: list[str] = []
            while True:
                url = lb_url if lb is not None else survivors[i % 2].client_url
                status = write_status(url, f"bench-{round_}", str(i), args.request_timeout)
                if status == "200":
                    break
                failures.append(status)
                i += 1
                if time.monotonic() - killed > 30:
                    raise RuntimeError("no write succeeded within 30s of the kill")
            took = time.monotonic() - killed
            times.append(took)
            procs[lid].wait(timeout=10)
            new = wait_for_leader(survivors, 5)
            print(
                f"round {round_:2d}: killed leader n{lid}, writes resumed after "
                f"{took * 1000:6.0f} ms (new leader n{new.ports.node_id if new else '?'}, "
                f"{i + 1} attempts{': ' + ', '.join(failures) if failures else ''})",
                flush=True,
            )
            procs[lid] = start_node(leader)
        print(
            f"\nfailover over {len(times)} leader kills: "
            f"median {statistics.median(times) * 1000:.0f} ms, "
            f"max {max(times) * 1000:.0f} ms, min {min(times) * 1000:.0f} ms "
            f"(tick 50 ms, election timeout 500-1000 ms"
            f"{', writes through HAProxy' if lb is not None else ''})"
        )
        return 0
    finally:
        if lb is not None:
            lb.terminate()
            lb.wait(timeout=10)
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        if args.keep:
            print(f"data and logs kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
