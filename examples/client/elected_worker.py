"""A leader-elected worker that does its job only while elected: several copies run (for
availability), one leads and works; when it dies or loses the cluster, another takes over
within the lease's TTL. Every effect carries the leader's fencing revision, so a leader that
stalled past its TTL (and does not know yet that it lost) cannot overwrite its successor.

    export RAFTNODE_ENDPOINTS=http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083
    python examples/client/elected_worker.py --name worker-a &
    python examples/client/elected_worker.py --name worker-b &   # waits; leads if a dies

Each unit of work here appends a record under ``jobs/report/`` in a transaction guarded by
``election.guard()`` (the leader's key still has its create revision): the store refuses the
write of anyone who no longer leads. For effects outside raftnode, send the fencing revision
along and have the resource refuse a revision lower than the highest it has seen.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable

from raftnode.client import Client, ClientError, Election, TxnOp

WorkUnit = Callable[["ElectedWorker", int], None]


class ElectedWorker:
    """Campaigns in ``election``; while it leads, does ``unit`` every ``interval`` seconds."""

    def __init__(
        self,
        kv: Client,
        identity: str,
        *,
        election: str = "jobs/leader",
        ttl: int = 5,
        interval: float = 0.2,
    ) -> None:
        self.kv = kv
        self.identity = identity
        self.election = Election(kv, election, ttl=ttl)
        self.interval = interval
        self.done = 0
        self.terms: list[int] = []
        """The fencing revisions this worker led with, in order."""
        self._stopped = threading.Event()

    def work_once(self, fencing: int) -> bool:
        """One unit of work, applied only if this worker still leads: False when the store
        refused it (leadership was lost)."""
        self.done += 1
        record = f"jobs/report/{fencing:020d}-{self.done:08d}"
        result = self.kv.txn(
            [self.election.guard()],
            [TxnOp.put(record, f"{self.identity} {fencing}")],
        )
        return result.succeeded

    def run(self) -> None:
        """Campaign, work while leading, campaign again after a loss, until ``stop()``."""
        while not self._stopped.is_set():
            try:
                # Bounded so that stop() is seen; a timed-out campaign leaves nothing behind.
                fencing = self.election.campaign(self.identity, timeout=2.0)
            except ClientError:
                continue  # not elected yet (or the cluster is away): stand again
            self.terms.append(fencing)
            try:
                while not self._stopped.is_set() and self.election.is_leader:
                    if not self.work_once(fencing):
                        break
                    self._stopped.wait(self.interval)
            except ClientError:
                pass  # LockLost (the lease ended) or the cluster away: stand again
            finally:
                with contextlib.suppress(ClientError):  # else the key goes at the TTL
                    self.election.resign()

    def stop(self) -> None:
        self._stopped.set()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoints", help="node URLs, comma-separated (default: $RAFTNODE_ENDPOINTS)")
    p.add_argument("--name", required=True, help="this worker's identity")
    p.add_argument("--election", default="jobs/leader")
    p.add_argument("--ttl", type=int, default=5)
    args = p.parse_args(argv)
    with Client(args.endpoints) as kv:
        worker = ElectedWorker(kv, args.name, election=args.election, ttl=args.ttl)
        signal.signal(signal.SIGTERM, lambda *_: worker.stop())
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            while thread.is_alive():
                thread.join(1.0)
                leader = worker.election.leader()
                print(f"leader: {leader.value if leader else '-'}; I did {worker.done} units")
        except KeyboardInterrupt:
            worker.stop()
            thread.join(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
