"""A PySyncObj key-value store behind a minimal Tornado app: what a Python user would write.

Runs in its own virtualenv (PySyncObj from PyPI), one process per member, on loopback:

    python bench/pysyncobj_kv.py --raft 127.0.0.1:P1 --partner 127.0.0.1:P2 \
        --partner 127.0.0.1:P3 --http 127.0.0.1:H1

POST /kv {"key","value"} replicates a set (200 once applied); GET /kv/{key} reads the local
copy (stale); GET /status {"leader": bool, "term": int, "commit": int}.
It imports nothing from raftnode.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import tornado.web
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated


class ReplicatedDict(SyncObj):
    def __init__(self, self_addr: str, partners: list[str]) -> None:
        super().__init__(self_addr, partners, SyncObjConf(dynamicMembershipChange=False))
        self._data: dict[str, str] = {}

    @replicated
    def set(self, key: str, value: str) -> bool:
        self._data[key] = value
        return True

    def get(self, key: str) -> str | None:
        return self._data.get(key)


class KvHandler(tornado.web.RequestHandler):
    def initialize(self, store: ReplicatedDict) -> None:
        self.store = store

    async def post(self) -> None:
        try:
            body = json.loads(self.request.body)
            key, value = str(body["key"]), str(body["value"])
        except (ValueError, KeyError, TypeError):
            self.set_status(400)
            self.write({"error": "bad_request"})
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[Any, Any]] = loop.create_future()

        def callback(result: Any, error: Any) -> None:
            loop.call_soon_threadsafe(
                lambda: done.done() or done.set_result((result, error))  # type: ignore[func-returns-value]
            )

        self.store.set(key, value, callback=callback)
        try:
            _, error = await asyncio.wait_for(done, timeout=5.0)
        except TimeoutError:
            error = "timeout"
        if error != FAIL_REASON.SUCCESS:
            self.set_status(503)
            self.write({"error": "not_committed", "reason": str(error)})
            return
        self.write({"ok": True})

    def get(self, key: str) -> None:
        value = self.store.get(key)
        if value is None:
            self.set_status(404)
            self.write({"error": "not_found"})
            return
        self.write({"value": value})


class StatusHandler(tornado.web.RequestHandler):
    def initialize(self, store: ReplicatedDict) -> None:
        self.store = store

    def get(self) -> None:
        status = self.store.getStatus()
        self.write(
            {
                "leader": bool(self.store._isLeader()),
                "term": int(status.get("raft_term", 0)),
                "commit": int(status.get("commit_idx", 0)),
            }
        )


async def serve(args: argparse.Namespace) -> None:
    store = ReplicatedDict(args.raft, args.partner)
    app = tornado.web.Application(
        [
            (r"/kv", KvHandler, {"store": store}),
            (r"/kv/(.+)", KvHandler, {"store": store}),
            (r"/status", StatusHandler, {"store": store}),
        ]
    )
    host, port = args.http.rsplit(":", 1)
    app.listen(int(port), address=host)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raft", required=True, help="this member's Raft address host:port")
    parser.add_argument("--partner", action="append", default=[], help="another member")
    parser.add_argument("--http", required=True, help="the HTTP API's host:port")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
