"""Configuration pushed to workers by watch: every worker holds the keys under a prefix in
memory and is told of each change as it is committed, whatever node dies meanwhile.

    RAFTNODE_ENDPOINTS=http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083 \
        python examples/client/config_push_watch.py --workers 3 --changes 20

The demo starts ``--workers`` workers (threads here; processes or hosts in real life, each
with its own ``Client``), then publishes ``--changes`` settings (puts and a few deletes) under
``--prefix``, and waits until every worker holds exactly what the cluster holds.

The pattern (as in etcd's clients): list the prefix, remember the listing's revision, watch
from the revision after it. ``Client.watch`` then reconnects to another node and resumes after
the last revision it delivered, so a worker never misses nor repeats a change. Only when the
nodes no longer keep the changes it needs (it was away longer than their history window) does
the watch raise ``WatchCompacted``: the worker lists again and watches from there.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable

from raftnode.client import Client, ClientError, Watch, WatchCompacted, WatchEvent

OnChange = Callable[[str, WatchEvent], None]


class ConfigWorker:
    """Holds the configuration under ``prefix`` and keeps it current by watching it."""

    def __init__(self, kv: Client, prefix: str, on_change: OnChange | None = None) -> None:
        self.kv = kv
        self.prefix = prefix
        self.on_change = on_change
        self.config: dict[str, str] = {}
        self.revision = 0
        """The store revision the configuration is current to."""
        self.relists = 0
        self._changed = threading.Condition()
        self._stopped = threading.Event()
        self._watch: Watch | None = None
        self.error: BaseException | None = None

    def load(self) -> None:
        """List the prefix. The pages are read one after another, each at its own revision;
        the watch starts after the first page's, so every change made while listing is
        replayed over the listing, in order, and the result converges."""
        config: dict[str, str] = {}
        first_revision = None
        start_after = None
        while True:
            page = self.kv.page(self.prefix, start_after=start_after, limit=500)
            if first_revision is None:
                first_revision = page.revision
            config.update((item.key, item.value) for item in page.items)
            if not page.more or not page.items:
                break
            start_after = page.items[-1].key
        with self._changed:
            self.config, self.revision = config, first_revision
            self._changed.notify_all()

    def run(self) -> None:
        """List, then follow the changes until ``stop()`` (run it in a thread)."""
        try:
            while not self._stopped.is_set():
                self.load()
                try:
                    self._follow()
                except WatchCompacted:
                    self.relists += 1  # away too long: list again
        except ClientError as e:  # no node for the watch's whole timeout
            self.error = e
        finally:
            with self._changed:
                self._changed.notify_all()

    def _follow(self) -> None:
        watch = self.kv.watch(prefix=self.prefix, start_revision=self.revision + 1)
        self._watch = watch
        if self._stopped.is_set():
            watch.close()
        with watch:
            for event in watch:
                with self._changed:
                    assert event.key is not None
                    if event.type == "put" and event.value is not None:
                        self.config[event.key] = event.value
                    else:
                        self.config.pop(event.key, None)
                    self.revision = event.revision
                    self._changed.notify_all()
                if self.on_change is not None:
                    self.on_change(event.key, event)

    def stop(self) -> None:
        self._stopped.set()
        if self._watch is not None:
            self._watch.close()

    def wait_until(self, expected: dict[str, str], timeout: float) -> bool:
        """True once the configuration equals ``expected`` (within ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.config != expected:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.error is not None:
                    return False
                self._changed.wait(remaining)
            return True


def publish(kv: Client, prefix: str, changes: int) -> dict[str, str]:
    """Write ``changes`` settings (every fifth one deletes an earlier key); return what the
    cluster then holds under ``prefix``."""
    for i in range(changes):
        if i % 5 == 4:
            kv.delete(f"{prefix}setting-{i - 2:03d}")
        else:
            kv.put(f"{prefix}setting-{i:03d}", f"value {i} at {time.time():.3f}")
    return {item.key: item.value for item in kv.range(prefix)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoints", help="node URLs, comma-separated (default: $RAFTNODE_ENDPOINTS)")
    p.add_argument("--prefix", default="demo/config/")
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--changes", type=int, default=20)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the workers")
    args = p.parse_args(argv)

    def show(name: str) -> OnChange:
        def on_change(key: str, event: WatchEvent) -> None:
            print(f"{name}: {event.type} {key} (revision {event.revision})")

        return on_change

    with Client(args.endpoints) as kv:
        workers = [ConfigWorker(kv, args.prefix, show(f"worker-{n}")) for n in range(args.workers)]
        threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
        for t in threads:
            t.start()
        expected = publish(kv, args.prefix, args.changes)
        ok = all(w.wait_until(expected, args.timeout) for w in workers)
        for w in workers:
            w.stop()
        for t in threads:
            t.join(5)
    if not ok:
        print("a worker did not converge on the published configuration", file=sys.stderr)
        return 1
    print(f"{len(workers)} workers hold the {len(expected)} settings under {args.prefix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
