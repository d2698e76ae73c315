"""``raftnode lease grant|keepalive|revoke|ls`` and ``raftnode lock NAME -- CMD``.

Endpoints, credentials, ``--json`` and exit codes as for ``raftnode kv`` (0 done, 1 the lease
does not exist or the lock was not obtained within ``--timeout``, 2 usage, 3 unavailable,
4 other refusal). ``lock`` exits with CMD's exit code (128 + N when a signal N ended it), or 5
when the lease was lost while CMD ran: CMD is then terminated (SIGTERM, SIGKILL after 5 s),
since another process may hold the lock already.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from typing import Any

from raftnode.cli_kv import (
    DEFAULT_ENDPOINTS,
    EXIT_MISSING,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    _client,
    _error,
    _print_json,
    _seconds,
)
from raftnode.client import (
    ENDPOINTS_ENV,
    BadRequest,
    Client,
    ClientError,
    ServerRefusal,
    Unavailable,
)
from raftnode.client.concurrency import AcquireTimeout, Lock, LockLost
from raftnode.client.errors import LeaseNotFound
from raftnode.client.lease_ops import LeaseStatus

EXIT_LOST = 5
FENCING_ENV = "RAFTNODE_LOCK_FENCING"
TERMINATE_GRACE = 5.0


def _lease_id(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= (1 << 63) - 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a lease id (an integer from 1)")
    return int(text)


def _ttl(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 31_536_000:
        raise argparse.ArgumentTypeError(f"{text!r}: a TTL is whole seconds from 1 to 31536000")
    return int(text)


def _table(leases: list[LeaseStatus]) -> None:
    print(f"{'ID':>20}  {'TTL':>10}  {'GRANTED':>8}")
    for s in leases:
        print(f"{s.id:>20}  {s.ttl:>10.3f}  {s.granted_ttl:>8}")


def _cmd_grant(args: argparse.Namespace, client: Client) -> int:
    lease = client.grant_lease(args.ttl, keep_alive=False)
    if args.json:
        _print_json({"id": lease.id, "ttl": lease.ttl})
    else:
        print(f"lease {lease.id} granted with TTL {lease.ttl} s")
    return EXIT_OK


def _cmd_keepalive(args: argparse.Namespace, client: Client) -> int:
    """Renew every third of the TTL until Ctrl-C (or once with --once)."""
    while True:
        status = client.lease_keep_alive(args.id)
        if args.json:
            print(f'{{"id": {status.id}, "ttl": {status.ttl}}}', flush=True)
        else:
            print(f"lease {status.id} kept alive, TTL {status.ttl:g} s", flush=True)
        if args.once:
            return EXIT_OK
        try:
            time.sleep(max(status.granted_ttl / 3, 0.2))
        except KeyboardInterrupt:
            return EXIT_OK


def _cmd_revoke(args: argparse.Namespace, client: Client) -> int:
    if not client.revoke_lease(args.id):
        raise LeaseNotFound(404, "lease_not_found", f"lease {args.id} does not exist", {})
    if args.json:
        _print_json({"id": args.id, "revoked": True})
    else:
        print(f"lease {args.id} revoked")
    return EXIT_OK


def _cmd_ls(args: argparse.Namespace, client: Client) -> int:
    leases = client.leases()
    if args.json:
        _print_json({"leases": [asdict(s) for s in leases], "count": len(leases)})
    else:
        _table(leases)
    return EXIT_OK


def _cmd_lock(args: argparse.Namespace, client: Client) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ValueError("give the command to run after --, e.g. raftnode lock jobs -- ./job.sh")
    lost = threading.Event()
    lock = Lock(client, args.name, ttl=args.lock_ttl)
    try:
        fencing = lock.acquire(args.lock_timeout)
    except AcquireTimeout as e:
        _error(args, "lock_timeout", str(e), {"name": args.name})
        return EXIT_MISSING
    try:
        assert lock.lease is not None
        if not args.json:
            print(f"raftnode: holding {args.name} (fencing revision {fencing})", file=sys.stderr)
        env = {**os.environ, FENCING_ENV: str(fencing)}
        proc = subprocess.Popen(command, env=env)
        while True:
            try:
                code = proc.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                pass
            except KeyboardInterrupt:
                proc.send_signal(signal.SIGINT)
                continue
            if not lock.held:
                lost.set()
                _stop(proc)
                reason = lock.lease.lost_reason or "no keep-alive answered within the TTL"
                _error(
                    args,
                    "lock_lost",
                    f"lost the lock {args.name} while the command ran ({reason}); "
                    "the command was terminated",
                    {"name": args.name, "fencing_revision": fencing},
                )
                return EXIT_LOST
        return 128 - code if code < 0 else code
    finally:
        lock.release()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=TERMINATE_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=TERMINATE_GRACE)


def _run(args: argparse.Namespace) -> int:
    try:
        with _client(args) as client:
            return int(args.lease_func(args, client))
    except ValueError as e:
        _error(args, "usage", str(e), {})
        return EXIT_USAGE
    except LeaseNotFound as e:
        _error(args, e.code, e.message, {"id": getattr(args, "id", None)})
        return EXIT_MISSING
    except FileNotFoundError as e:
        _error(args, "usage", f"cannot run the command: {e}", {})
        return EXIT_USAGE
    except LockLost as e:
        _error(args, "lock_lost", str(e), {})
        return EXIT_LOST
    except BadRequest as e:
        _error(args, e.code, e.message, {"status": e.status})
        return EXIT_USAGE
    except Unavailable as e:
        _error(args, "unavailable", str(e), {"maybe_applied": e.maybe_applied})
        return EXIT_UNAVAILABLE
    except ServerRefusal as e:
        _error(args, e.code, e.message, {"status": e.status})
        return EXIT_REFUSED
    except ClientError as e:
        _error(args, "error", str(e), {})
        return EXIT_REFUSED


def _common(p: argparse.ArgumentParser, timeout: bool = True) -> None:
    p.add_argument(
        "--endpoints",
        help=f"comma-separated node URLs or the VIP (default: ${ENDPOINTS_ENV}, "
        f"else {DEFAULT_ENDPOINTS})",
    )
    if timeout:
        p.add_argument(
            "--timeout", type=_seconds, default=15.0, help="seconds for each call (retries too)"
        )
    p.add_argument("--json", action="store_true", help="print JSON (errors too, on stderr)")
    p.add_argument("--token", help="bearer token (default: $RAFTNODE_TOKEN)")
    p.add_argument("--cacert", dest="ca_file", help="CA file to verify https endpoints")
    p.add_argument("--cert", dest="cert_file", help="client certificate file (https)")
    p.add_argument("--key", dest="key_file", help="client certificate's key file (https)")


def add_commands(sub: Any) -> None:
    """Add ``lease`` and ``lock`` to the ``raftnode`` parser's subcommands."""
    lease = sub.add_parser(
        "lease",
        help="grant, keep alive, revoke and list leases",
        description="Exit codes: 0 done, 1 no such lease, 2 usage, 3 unavailable, 4 refusal.",
    )
    lsub = lease.add_subparsers(dest="lease_command", required=True)
    p = lsub.add_parser("grant", help="grant a lease of TTL seconds; print its id")
    p.add_argument("ttl", type=_ttl, help="whole seconds")
    _common(p)
    p.set_defaults(func=_run, lease_func=_cmd_grant)
    p = lsub.add_parser("keepalive", help="renew a lease every TTL/3 until Ctrl-C")
    p.add_argument("id", type=_lease_id)
    p.add_argument("--once", action="store_true", help="renew once and exit")
    _common(p)
    p.set_defaults(func=_run, lease_func=_cmd_keepalive)
    p = lsub.add_parser("revoke", help="revoke a lease, deleting its keys")
    p.add_argument("id", type=_lease_id)
    _common(p)
    p.set_defaults(func=_run, lease_func=_cmd_revoke)
    p = lsub.add_parser("ls", help="list the live leases")
    _common(p)
    p.set_defaults(func=_run, lease_func=_cmd_ls)

    p = sub.add_parser(
        "lock",
        help="run a command while holding a distributed lock",
        description=f"Waits for the lock NAME, runs CMD with ${FENCING_ENV} set to the fencing "
        "revision, releases the lock when CMD exits and exits with its code. 1: not obtained "
        f"within --timeout; {EXIT_LOST}: the lease was lost while CMD ran (CMD terminated).",
    )
    _lock_options(p)
    p.add_argument("name", help="the lock's name (its keys live under NAME/)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="[OPTIONS] -- CMD [ARGS...]")
    p.set_defaults(func=_run_lock, lease_func=_cmd_lock, timeout=15.0, lock_parser=p)


def _lock_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ttl", dest="lock_ttl", type=_ttl, default=10, help="lease TTL (default 10)")
    p.add_argument(
        "--timeout",
        dest="lock_timeout",
        type=_seconds,
        default=None,
        help="give up waiting for the lock after S seconds (default: wait)",
    )
    _common(p, timeout=False)


def _run_lock(args: argparse.Namespace) -> int:
    """``lock NAME [OPTIONS] -- CMD``: the options between NAME and ``--`` are read here
    (argparse hands everything after NAME over unparsed)."""
    rest = list(args.rest)
    if "--" not in rest:
        args.lock_parser.error("give the command after --, e.g. raftnode lock jobs -- ./job.sh")
    split = rest.index("--")
    options = argparse.ArgumentParser(prog="raftnode lock NAME", add_help=False)
    _lock_options(options)
    defaults = {a.dest: getattr(args, a.dest) for a in options._actions}
    options.set_defaults(**defaults)
    options.parse_args(rest[:split], namespace=args)
    args.command = rest[split + 1 :]
    return _run(args)
