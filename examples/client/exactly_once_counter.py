"""An exactly-once counter on raftnode: each increment is applied once, whatever fails between
the program and the cluster (a dead leader, an election, a lost answer, a timeout).

    RAFTNODE_ENDPOINTS=http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083 \
        python examples/client/exactly_once_counter.py --key jobs/done --increments 100

Run several at once: the counter ends at the sum of their increments, never more, never less.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid

from raftnode.client import Client, CompareFailed, NotFound, Unavailable


def increment(kv: Client, key: str, give_up_after: float = 60.0) -> int:
    """Add one to the counter at ``key`` and return the value it now holds."""
    deadline = time.monotonic() + give_up_after
    while True:
        try:
            current: str | None = kv.get(key).value
        except NotFound:
            current = None  # the first increment creates the key
        new = str(int(current or "0") + 1)
        # One idempotency key per logical write: this exact compare-and-set.
        write_key = str(uuid.uuid4())
        while True:
            try:
                kv.compare_and_swap(key, current, new, idempotency_key=write_key)
                return int(new)
            except CompareFailed:
                break  # another writer got there first: read again, new write, new key
            except Unavailable as e:
                # The client already retried until its deadline. The write may have been
                # applied (e.maybe_applied): sending it again with the same key answers with
                # its first outcome and never applies it twice.
                if time.monotonic() > deadline:
                    raise
                print(f"retrying the same write: {e}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoints", help="node URLs, comma-separated (default: $RAFTNODE_ENDPOINTS)")
    p.add_argument("--key", default="counter")
    p.add_argument("--increments", type=int, default=10)
    args = p.parse_args(argv)
    with Client(args.endpoints) as kv:
        value = 0
        for _ in range(args.increments):
            value = increment(kv, args.key)
    print(f"{args.key} = {value} after my {args.increments} increments")
    return 0


if __name__ == "__main__":
    sys.exit(main())
