"""A replicated counter service built on raftnode's embedding API (``raftnode.embed``).

Each process runs one Raft node and a tiny HTTP API:

    POST /incr {"by": 5}   -> {"value": 12}      (any node; followers answer 421 with the leader)
    GET  /value            -> {"value": 12}      (linearizable on every node)

The HTTP answers are plain functions (``increment``, ``read_value``) that the Tornado handlers
call, so the tests run them against a whole cluster in memory (``raftnode.testing``) without
ports. Run three real ones:

    python examples/counter/counter_service.py --id 1 --http 127.0.0.1:8201 \\
        --members 1=127.0.0.1:9201,2=127.0.0.1:9202,3=127.0.0.1:9203 \\
        --data /tmp/counter1 --secret-file /path/to/secret
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from pathlib import Path
from typing import Any

import tornado.web

from raftnode.embed import Address, NodeOptions, NotLeader, OutcomeUnknown, RaftNode, Unavailable


class Counter:
    """The state machine: an integer, changed only by committed ``by`` increments."""

    def __init__(self) -> None:
        self.value = 0

    def apply(self, index: int, data: bytes) -> int:
        self.value += int(json.loads(data)["by"])
        return self.value

    def snapshot(self) -> bytes:
        return json.dumps({"value": self.value}).encode()

    def restore(self, data: bytes) -> None:
        self.value = json.loads(data)["value"] if data else 0


Answer = tuple[int, dict[str, Any]]
"""An HTTP status and its JSON body."""


async def increment(node: RaftNode, body: bytes) -> Answer:
    """``POST /incr``: propose the increment and answer with the counter's new value."""
    try:
        by = int(json.loads(body or b"{}").get("by", 1))
    except (ValueError, TypeError, AttributeError):
        return 400, {"error": "bad_request", "message": 'send {"by": <integer>}'}
    try:
        value = await node.propose(json.dumps({"by": by}).encode(), timeout=5.0)
    except NotLeader as e:
        return 421, {"error": "not_leader", "leader": e.leader_id}  # Misdirected: ask the leader
    except Unavailable as e:
        return 503, {"error": "unavailable", "message": str(e)}
    except OutcomeUnknown as e:
        return 504, {"error": "outcome_unknown", "message": str(e)}
    return 200, {"value": value}


async def read_value(node: RaftNode, counter: Counter) -> Answer:
    """``GET /value``: a linearizable read, on any node."""
    try:
        await node.read_barrier("linearizable", timeout=5.0)
    except Unavailable as e:
        return 503, {"error": "unavailable", "message": str(e)}
    return 200, {"value": counter.value}


class IncrementHandler(tornado.web.RequestHandler):
    def initialize(self, node: RaftNode) -> None:
        self.node = node

    async def post(self) -> None:
        status, body = await increment(self.node, self.request.body)
        self.set_status(status)
        self.finish(body)


class ValueHandler(tornado.web.RequestHandler):
    def initialize(self, node: RaftNode, counter: Counter) -> None:
        self.node = node
        self.counter = counter

    async def get(self) -> None:
        status, body = await read_value(self.node, self.counter)
        self.set_status(status)
        self.finish(body)


def make_app(node: RaftNode, counter: Counter) -> tornado.web.Application:
    return tornado.web.Application(
        [
            (r"/incr", IncrementHandler, {"node": node}),
            (r"/value", ValueHandler, {"node": node, "counter": counter}),
        ]
    )


def parse_address(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return Address(host, int(port))


async def run(args: argparse.Namespace) -> None:
    members = {
        int(i): parse_address(a) for i, a in (m.split("=", 1) for m in args.members.split(","))
    }
    counter = Counter()
    node = RaftNode(
        NodeOptions(
            node_id=args.id,
            data_dir=Path(args.data),
            listen_peer=members[args.id],
            members=members,
            secret=Path(args.secret_file).read_bytes().strip(),
        ),
        counter,
    )
    node.add_leader_listener(lambda leader, term: logging.info("leader is now %s", leader))
    await node.start()
    http = parse_address(args.http)
    make_app(node, counter).listen(http.port, http.host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await node.stop(transfer_timeout=3.0)


def main() -> None:
    parser = argparse.ArgumentParser(description="A replicated counter on raftnode.")
    parser.add_argument("--id", type=int, required=True)
    parser.add_argument("--http", required=True, help="host:port of this node's HTTP API")
    parser.add_argument("--members", required=True, help="id=host:port of every node's peer port")
    parser.add_argument("--data", required=True, help="data directory")
    parser.add_argument("--secret-file", required=True)
    logging.basicConfig(level=logging.INFO)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
