"""Service registration that disappears when the process dies: each instance writes its
address under ``services/<service>/<instance>`` attached to a lease it keeps alive; when the
process dies (or loses the cluster for a TTL), the lease expires and the entry goes with it.

    export RAFTNODE_ENDPOINTS=http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083
    python examples/client/service_registration.py register api api-1 10.0.0.5:8000 --ttl 5
    python examples/client/service_registration.py list api      # from anywhere else

``register`` stays registered until Ctrl-C (then revokes the lease: the entry goes at once);
kill it with ``kill -9`` and the entry goes within the TTL. ``list`` prints the live
instances. The lease's keep-alive runs in a background thread (``Client.grant_lease``); if it
cannot renew the lease within the TTL, ``on_lost`` fires and this example registers again
with a new lease, so a long partition costs a gap in the listing, never a stale entry.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from raftnode.client import Client, ClientError, Lease


class Registration:
    """Keeps ``services/<service>/<instance> = address`` alive for as long as it runs."""

    def __init__(self, kv: Client, service: str, instance: str, address: str, ttl: int) -> None:
        self.kv = kv
        self.key = f"services/{service}/{instance}"
        self.address = address
        self.ttl = ttl
        self.lease: Lease | None = None
        self.lost = threading.Event()

    def register(self) -> None:
        """Grant a lease and attach the entry to it (once more after a loss)."""
        self.lost.clear()
        self.lease = self.kv.grant_lease(self.ttl, on_lost=lambda _: self.lost.set())
        self.kv.put(self.key, self.address, lease=self.lease.id)

    def run(self, stop: threading.Event) -> None:
        """Stay registered until ``stop``; then revoke (the entry goes at once)."""
        if self.lease is None:
            self.register()
        try:
            while not stop.is_set():
                if self.lost.wait(0.2) and not stop.is_set():
                    try:
                        self.register()
                    except ClientError as e:  # the cluster is away: try again shortly
                        print(f"registering again failed: {e}", file=sys.stderr)
                        stop.wait(1.0)
        finally:
            if self.lease is not None:
                with contextlib.suppress(ClientError):  # else the entry goes at the TTL
                    self.lease.revoke()


def instances(kv: Client, service: str) -> dict[str, str]:
    """The live instances of ``service``: instance name -> address."""
    prefix = f"services/{service}/"
    return {item.key[len(prefix) :]: item.value for item in kv.range(prefix)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoints", help="node URLs, comma-separated (default: $RAFTNODE_ENDPOINTS)")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("register", help="register an instance until Ctrl-C")
    r.add_argument("service")
    r.add_argument("instance")
    r.add_argument("address")
    r.add_argument("--ttl", type=int, default=5, help="lease TTL in seconds (default 5)")
    ls = sub.add_parser("list", help="print the live instances of a service")
    ls.add_argument("service")
    args = p.parse_args(argv)
    with Client(args.endpoints) as kv:
        if args.command == "list":
            for instance, address in sorted(instances(kv, args.service).items()):
                print(f"{instance}\t{address}")
            return 0
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        registration = Registration(kv, args.service, args.instance, args.address, args.ttl)
        registration.register()
        print(f"registered {registration.key} = {args.address}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # run() revokes on the way out
            registration.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
