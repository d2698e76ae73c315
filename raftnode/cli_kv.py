"""``raftnode kv get|put|del|ls|txn|watch``: the data command line, on ``raftnode.client``.

Endpoints come from ``--endpoints``, else ``$RAFTNODE_ENDPOINTS``, else the local quick start's
three nodes. Output is plain (a value, a table, one line per watch event) or, with ``--json``,
JSON on stdout (one document; JSON lines for ``watch``). Errors go to stderr. Exit codes: 0
done, 1 the key (or the lease a put names) does not exist or a compare failed (for ``txn``:
the failure branch ran; for ``watch --count``: fewer events came before ``--timeout``), 2 a
usage error (bad arguments, or a request the nodes refuse as malformed), 3 the cluster could
not take the call before the deadline (unavailable), 4 any other refusal (quota, a server
error, a compacted watch start).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from raftnode.client import (
    ENDPOINTS_ENV,
    UNSET,
    BadRequest,
    Client,
    ClientError,
    CompareFailed,
    KeyValue,
    LeaseNotFound,
    NotFound,
    ServerRefusal,
    Txn,
    TxnResult,
    Unavailable,
    WatchCompacted,
    WatchEvent,
)
from raftnode.consistency import Consistency

DEFAULT_ENDPOINTS = "http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083"
EXIT_OK, EXIT_MISSING, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_REFUSED = 0, 1, 2, 3, 4
VALUE_COLUMN = 60
"""Characters of a value shown in ``kv ls`` (``--json`` shows them whole)."""


def _client(args: argparse.Namespace) -> Client:
    endpoints = args.endpoints or os.environ.get(ENDPOINTS_ENV) or DEFAULT_ENDPOINTS
    return Client(
        endpoints,
        timeout=args.timeout,
        token=args.token or os.environ.get("RAFTNODE_TOKEN") or None,
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
    )


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2))


def _shown(text: str, width: int | None = None) -> str:
    """``text`` on one line: control characters escaped, cut to ``width`` with an ellipsis."""
    one_line = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    if width is not None and len(one_line) > width:
        return one_line[: width - 3] + "..."
    return one_line


def _cmd_get(args: argparse.Namespace, client: Client) -> int:
    kv = client.get(args.key, consistency=args.consistency)
    if args.json:
        _print_json(asdict(kv))
    else:
        print(kv.value)
    return EXIT_OK


def _read_value(args: argparse.Namespace) -> str:
    if args.value != "-":
        return str(args.value)
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"the value on stdin is not UTF-8: {e}") from e


def _cmd_put(args: argparse.Namespace, client: Client) -> int:
    prev = UNSET if args.prev_value is None else args.prev_value
    if args.create:
        prev = None
    result = client.put(
        args.key,
        _read_value(args),
        prev_value=prev,
        prev_revision=args.prev_revision,
        lease=args.lease,
        idempotency_key=args.idempotency_key,
    )
    if args.json:
        _print_json(asdict(result))
    else:
        what = "created" if result.created else "updated"
        replay = ", replayed" if result.replayed else ""
        print(f"OK {what} {_shown(args.key)} at revision {result.revision}{replay}")
    return EXIT_OK


def _cmd_del(args: argparse.Namespace, client: Client) -> int:
    prev = UNSET if args.prev_value is None else args.prev_value
    result = client.delete(
        args.key,
        prev_value=prev,
        prev_revision=args.prev_revision,
        idempotency_key=args.idempotency_key,
    )
    if args.json:
        _print_json(asdict(result))
    else:
        print(f"OK deleted {_shown(args.key)} at revision {result.revision}")
    return EXIT_OK


def _listing(args: argparse.Namespace, client: Client) -> Iterator[KeyValue]:
    for n, kv in enumerate(
        client.range(args.prefix, page_size=args.page_size, consistency=args.consistency)
    ):
        if args.limit is not None and n >= args.limit:
            return
        yield kv


def _cmd_ls(args: argparse.Namespace, client: Client) -> int:
    if args.count_only:
        counted = client.count(args.prefix, consistency=args.consistency)
        if args.json:
            _print_json(asdict(counted))
        else:
            print(counted.count)
        return EXIT_OK
    items = _listing(args, client)
    if args.json:
        # Streamed as one JSON array, so a long listing is never held in memory whole.
        print("[", end="")
        for n, kv in enumerate(items):
            print(("," if n else "") + "\n  " + json.dumps(asdict(kv), ensure_ascii=False), end="")
        print("\n]")
        return EXIT_OK
    if args.keys_only:
        for kv in items:
            print(_shown(kv.key))
        return EXIT_OK
    first = [kv for _, kv in zip(range(100), items, strict=False)]
    width = max([len("KEY")] + [min(len(_shown(kv.key)), 60) for kv in first])
    print(f"{'KEY':<{width}}  {'REVISION':>9}  VALUE")
    count = 0
    for kv in (*first, *items):
        rev = "-" if kv.mod_revision is None else str(kv.mod_revision)
        print(f"{_shown(kv.key):<{width}}  {rev:>9}  {_shown(kv.value, VALUE_COLUMN)}")
        count += 1
    print(f"({count} key{'s' if count != 1 else ''})", file=sys.stderr)
    return EXIT_OK


def _read_txn(source: str) -> Txn:
    """The transaction in ``source`` (a file, or - for stdin), checked before it is sent."""
    try:
        if source == "-":
            text = sys.stdin.buffer.read().decode("utf-8")
        else:
            with open(source, encoding="utf-8") as f:
                text = f.read()
    except OSError as e:
        raise ValueError(f"cannot read the transaction from {source}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ValueError(f"the transaction in {source} is not UTF-8: {e}") from e
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise ValueError(f"the transaction in {source} is not valid JSON: {e}") from e
    return Txn.from_json(obj)


def _print_txn(result: TxnResult) -> None:
    branch = "SUCCEEDED (success branch ran)" if result.succeeded else "FAILED (failure branch ran)"
    replay = ", replayed" if result.replayed else ""
    print(f"{branch} at revision {result.revision}{replay}")
    for r in result.responses:
        key = _shown(r.key)
        if r.op == "get":
            if r.found:
                shown = _shown(r.value or "", VALUE_COLUMN)
                print(f"  get     {key} = {shown}  (mod_revision {r.mod_revision})")
            else:
                print(f"  get     {key}: not found")
        elif r.op == "put":
            what = "created" if r.created else "updated"
            print(f"  put     {key}: {what}, mod_revision {r.mod_revision}")
        else:
            print(f"  delete  {key}: {'deleted' if r.deleted else 'did not exist'}")


def _cmd_txn(args: argparse.Namespace, client: Client) -> int:
    txn = _read_txn(args.file)
    result = client.txn(txn, idempotency_key=args.idempotency_key)
    if args.json:
        _print_json(asdict(result))
    else:
        _print_txn(result)
    return EXIT_OK if result.succeeded else EXIT_MISSING


def _event_line(event: WatchEvent) -> str:
    kind = event.type.upper()
    line = f"{event.revision:>9}  {kind:<8}  {_shown(event.key or '')}"
    if event.type == "put":
        line += f"  {_shown(event.value or '', VALUE_COLUMN)}"
    return line


def _cmd_watch(args: argparse.Namespace, client: Client) -> int:
    key, prefix = (None, args.key) if args.prefix else (args.key, None)
    watch = client.watch(key, prefix=prefix, start_revision=args.rev, progress=args.progress)
    timer = None
    if args.watch_timeout is not None:
        timer = threading.Timer(args.watch_timeout, watch.close)
        timer.daemon = True
        timer.start()
    seen = 0
    try:
        with watch:
            if not args.json:
                print(f"{'REVISION':>9}  {'TYPE':<8}  KEY  VALUE", flush=True)
            for event in watch:
                if args.json:
                    print(json.dumps(asdict(event), ensure_ascii=False), flush=True)
                else:
                    print(_event_line(event), flush=True)
                if event.type != "progress":
                    seen += 1
                if args.count is not None and seen >= args.count:
                    return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        if timer is not None:
            timer.cancel()
    if args.count is not None:
        _error(
            args,
            "timeout",
            f"{seen} of {args.count} events came within {args.watch_timeout:g} s",
            {"seen": seen},
        )
        return EXIT_MISSING
    return EXIT_OK


def _error(args: argparse.Namespace, code: str, message: str, extra: dict[str, Any]) -> None:
    if args.json:
        print(
            json.dumps({"error": code, "message": message, **extra}, ensure_ascii=False),
            file=sys.stderr,
        )
    else:
        print(f"raftnode: {message}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    """One kv command with its exit code (see the module docstring)."""
    try:
        with _client(args) as client:
            return int(args.kv_func(args, client))
    except ValueError as e:
        _error(args, "usage", str(e), {})
        return EXIT_USAGE
    except NotFound as e:
        _error(args, e.code, e.message, {"key": e.key})
        return EXIT_MISSING
    except LeaseNotFound as e:
        _error(args, e.code, e.message, {"lease": e.lease})
        return EXIT_MISSING
    except CompareFailed as e:
        held = f"holds {e.current_value!r}" if e.exists else "does not exist"
        _error(
            args,
            e.code,
            f"compare failed: the key {held}; nothing was written",
            {"current_value": e.current_value, "exists": e.exists},
        )
        return EXIT_MISSING
    except BadRequest as e:
        _error(args, e.code, e.message, {"status": e.status})
        return EXIT_USAGE
    except Unavailable as e:
        extra = {"maybe_applied": e.maybe_applied, "idempotency_key": e.idempotency_key}
        _error(args, "unavailable", str(e), extra)
        return EXIT_UNAVAILABLE
    except WatchCompacted as e:
        _error(args, "compacted", str(e), {"compact_revision": e.compact_revision})
        return EXIT_REFUSED
    except ServerRefusal as e:
        _error(args, e.code, e.message, {"status": e.status})
        return EXIT_REFUSED
    except ClientError as e:
        _error(args, "error", str(e), {})
        return EXIT_REFUSED


def add_commands(sub: Any) -> None:
    """Add ``kv`` to the ``raftnode`` parser's subcommands."""

    def common(p: argparse.ArgumentParser, timeout: bool = True) -> None:
        p.add_argument(
            "--endpoints",
            help=f"comma-separated node URLs or the VIP (default: ${ENDPOINTS_ENV}, "
            f"else {DEFAULT_ENDPOINTS})",
        )
        if timeout:
            p.add_argument(
                "--timeout",
                type=_seconds,
                default=15.0,
                help="seconds for the whole call (retries too)",
            )
        p.add_argument("--json", action="store_true", help="print JSON (errors too, on stderr)")
        p.add_argument("--token", help="bearer token (default: $RAFTNODE_TOKEN)")
        p.add_argument("--cacert", dest="ca_file", help="CA file to verify https endpoints")
        p.add_argument("--cert", dest="cert_file", help="client certificate file (https)")
        p.add_argument("--key", dest="key_file", help="client certificate's key file (https)")

    def consistency(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--consistency",
            choices=[c.value for c in Consistency],
            default=Consistency.LINEARIZABLE.value,
            help="how fresh the read must be (default: linearizable)",
        )

    def idempotency(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--idempotency-key",
            help="this write's key (default: a new uuid4); reuse it only to resend the same write",
        )

    def prev_revision(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--prev-revision",
            type=_revision,
            help="only if the key's mod_revision is this (0: only if the key is absent)",
        )

    kv = sub.add_parser(
        "kv",
        help="read, write and watch keys (get, put, del, ls, txn, watch)",
        description="Exit codes: 0 done, 1 not found or compare failed, 2 usage, "
        "3 unavailable (deadline passed), 4 other refusal.",
    )
    ksub = kv.add_subparsers(dest="kv_command", required=True)
    p = ksub.add_parser("get", help="print a key's value")
    p.add_argument("key")
    consistency(p)
    common(p)
    p.set_defaults(func=_run, kv_func=_cmd_get)
    p = ksub.add_parser("put", help="write a key (compare-and-set with --prev-value/--create)")
    p.add_argument("key")
    p.add_argument("value", help="the value; - reads it from stdin")
    cas = p.add_mutually_exclusive_group()
    cas.add_argument("--prev-value", help="write only if the key holds this value")
    cas.add_argument("--create", action="store_true", help="write only if the key is absent")
    p.add_argument(
        "--lease", type=_positive, help="attach the key to this lease (it goes when the lease ends)"
    )
    prev_revision(p)
    idempotency(p)
    common(p)
    p.set_defaults(func=_run, kv_func=_cmd_put)
    p = ksub.add_parser("del", help="delete a key")
    p.add_argument("key")
    p.add_argument("--prev-value", help="delete only if the key holds this value")
    prev_revision(p)
    idempotency(p)
    common(p)
    p.set_defaults(func=_run, kv_func=_cmd_del)
    p = ksub.add_parser("ls", help="list keys under a prefix, in key order (every page)")
    p.add_argument("prefix", nargs="?", default="")
    p.add_argument("--limit", type=_positive, help="stop after this many keys")
    p.add_argument("--page-size", type=_positive, default=None, help="keys per request")
    p.add_argument("--keys-only", action="store_true", help="print the keys alone")
    p.add_argument("--count-only", action="store_true", help="print how many keys (one request)")
    consistency(p)
    common(p)
    p.set_defaults(func=_run, kv_func=_cmd_ls)
    p = ksub.add_parser(
        "txn",
        help="run a transaction (JSON: compare, success, failure) from a file or stdin",
        description='The JSON of POST /txn: {"compare": [{"key", "target", "op", "value"}], '
        '"success": [{"op": "put", "key", "value"}, {"op": "delete"|"get", "key"}], '
        '"failure": [...]}. Exit 0 when the compares held, 1 when the failure branch ran.',
    )
    p.add_argument("file", nargs="?", default="-", help="the transaction's JSON file (- stdin)")
    idempotency(p)
    common(p)
    p.set_defaults(func=_run, kv_func=_cmd_txn)
    p = ksub.add_parser(
        "watch",
        help="print changes to a key or prefix as they happen, one line each",
        description="Follows changes across dead nodes without gap or duplicate. Exit 0 at "
        "--count events, at --timeout without --count, or on Ctrl-C; 1 when --timeout ends "
        "it before --count events; 4 when --rev is older than the nodes keep (compacted).",
    )
    p.add_argument("key", help="the key (with --prefix: the prefix; '' for every key)")
    p.add_argument("--prefix", action="store_true", help="watch every key under KEY")
    p.add_argument("--rev", type=_positive, help="from this revision (default: the next one)")
    p.add_argument("--count", type=_positive, help="exit after this many changes")
    p.add_argument(
        "--timeout", dest="watch_timeout", type=_seconds, help="stop watching after S seconds"
    )
    p.add_argument("--progress", action="store_true", help="print progress events too")
    p.add_argument(
        "--reconnect-timeout",
        dest="timeout",
        type=_seconds,
        default=60.0,
        help="give up (exit 3) when no node takes the watch for this long (default 60)",
    )
    common(p, timeout=False)
    p.set_defaults(func=_run, kv_func=_cmd_watch)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value:g} seconds: must be positive")
    return value


def _revision(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a revision (a whole number from 0)")
    return int(text)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value
