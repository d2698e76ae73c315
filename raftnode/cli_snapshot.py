"""``raftnode snapshot save|inspect|restore``: back up a running cluster, look at a backup, and
restore one into a fresh data directory for a new cluster (etcdctl snapshot save and
etcdutl snapshot restore)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from raftnode.cli_admin import DEFAULT_ENDPOINT, Credentials, add_credentials
from raftnode.config import Address
from raftnode.kv.store import StoreError
from raftnode.snapshot_file import describe, restore_data_dir


def _save(args: argparse.Namespace) -> int:
    dest = Path(args.file)
    part = dest.with_name(dest.name + ".part")
    url = args.endpoint.rstrip("/") + "/admin/v1/snapshot"
    digest = hashlib.sha256()
    try:
        request = urllib.request.Request(url)
        opened = Credentials.from_args(args).open(request, args.timeout)
        with opened as resp, part.open("wb") as out:
            expected = resp.headers.get("X-Raftnode-Snapshot-Sha256", "")
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except urllib.error.HTTPError as e:
        part.unlink(missing_ok=True)
        print(f"raftnode: snapshot from {url}: HTTP {e.code}: {e.read()[:300]!r}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as e:
        part.unlink(missing_ok=True)
        print(f"raftnode: snapshot from {url}: {e}", file=sys.stderr)
        return 1
    if digest.hexdigest() != expected:
        part.unlink(missing_ok=True)
        print(
            f"raftnode: snapshot from {url} is damaged: sha256 {digest.hexdigest()}, "
            f"the node said {expected or 'nothing'}",
            file=sys.stderr,
        )
        return 1
    part.replace(dest)
    desc = describe(dest)
    print(
        f"saved {dest}: index {desc.index}, term {desc.term}, {desc.keys} keys, "
        f"{desc.size_bytes} bytes, sha256 {desc.sha256}"
    )
    return 0


def _inspect(args: argparse.Namespace) -> int:
    try:
        desc = describe(Path(args.file))
    except (StoreError, OSError) as e:
        print(f"raftnode: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(desc.to_json(), indent=2))
        return 0
    print(f"index     {desc.index}")
    print(f"term      {desc.term}")
    print(f"voters    {', '.join(map(str, desc.voters))}")
    print(f"learners  {', '.join(map(str, desc.learners)) or '-'}")
    print(f"revision  {desc.revision}")
    print(f"keys      {desc.keys}")
    print(f"size      {desc.size_bytes} bytes")
    print(f"sha256    {desc.sha256}")
    return 0


def parse_peers(text: str) -> dict[int, Address]:
    """``1=10.0.0.1:9081,2=10.0.0.2:9081``: the new cluster's members (ValueError says why)."""
    peers: dict[int, Address] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        node, sep, address = item.partition("=")
        if not sep or not node.isdigit() or int(node) <= 0:
            raise ValueError(f"{item!r}: expected ID=host:port with a positive ID")
        peers[int(node)] = Address.parse(address)
    if not peers:
        raise ValueError("no members given")
    return peers


def _restore(args: argparse.Namespace) -> int:
    try:
        peers = parse_peers(args.peers)
        if args.node_id not in peers:
            raise ValueError(f"--node-id {args.node_id} is not among --peers {sorted(peers)}")
        desc = restore_data_dir(Path(args.file), Path(args.data_dir), peers, args.cluster_token)
    except (ValueError, StoreError, OSError) as e:
        print(f"raftnode: restore: {e}", file=sys.stderr)
        return 1
    print(
        f"restored {args.file} into {args.data_dir}: index {desc.index}, {desc.keys} keys; "
        f"a new cluster of {', '.join(map(str, sorted(peers)))}: restore every member from the "
        "same file with the same --peers (and --cluster-token), then start them"
    )
    return 0


def add_commands(sub: Any) -> None:
    snap = sub.add_parser("snapshot", help="save, inspect or restore snapshot files")
    ssub = snap.add_subparsers(dest="snapshot_command", required=True)
    p = ssub.add_parser("save", help="download a consistent snapshot from a node")
    p.add_argument("file")
    p.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help="a node's client API URL")
    add_credentials(p)
    p.add_argument("--timeout", type=float, default=300.0)
    p.set_defaults(func=_save)
    p = ssub.add_parser("inspect", help="index, term, members, keys and checksum of a file")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_inspect)
    p = ssub.add_parser(
        "restore", help="a fresh data directory for a member of a new cluster (offline)"
    )
    p.add_argument("file")
    p.add_argument("--data-dir", required=True, help="an empty or absent directory")
    p.add_argument("--node-id", type=int, required=True, help="this member's node_id")
    p.add_argument(
        "--peers", required=True, help="the new cluster's members: 1=host:port,2=host:port,..."
    )
    p.add_argument(
        "--cluster-token",
        default="",
        help="mixed into the new cluster id: give every member the same (default: empty)",
    )
    p.set_defaults(func=_restore)
