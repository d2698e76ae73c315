"""Many keys through the VIP, concurrently (standard library only; imports lab_probe, found
through PYTHONPATH=molecule/shared). Prints one JSON document.

    python3 bulk_keys.py write http://10.77.1.100:8080 --count 10000 --run RUN
    python3 bulk_keys.py read http://10.77.1.100:8080 --count 10000 --run RUN

Key i is PREFIX + i (zero-padded), its value RUN-i: a reader recomputes every expected value
from --run. Every request is bounded (--timeout) and the whole run by --deadline.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import lab_probe


def key_of(prefix: str, i: int) -> str:
    return f"{prefix}{i:05d}"


def value_of(run: str, i: int) -> str:
    return f"{run}-{i}"


_LOCK = threading.Lock()


def count_code(codes: dict[str, int], status: int) -> None:
    with _LOCK:
        codes[str(status)] = codes.get(str(status), 0) + 1


def write_all(
    url: str, count: int, prefix: str, run: str, workers: int, timeout: float, deadline: float
) -> dict[str, Any]:
    """Write every key, retrying one that is not acknowledged (200) until the deadline."""
    started = time.monotonic()
    stop = started + deadline
    codes: dict[str, int] = {}

    def one(i: int) -> bool:
        while time.monotonic() < stop:
            body = {"key": key_of(prefix, i), "value": value_of(run, i)}
            status = lab_probe.request(f"{url}/kv", "POST", body, timeout)[0]
            count_code(codes, status)
            if status == 200:
                return True
            time.sleep(0.1)
        return False

    with ThreadPoolExecutor(max_workers=workers) as pool:
        acked = sum(pool.map(one, range(count)))
    seconds = time.monotonic() - started
    return {
        "count": count,
        "acked": acked,
        "prefix": prefix,
        "run": run,
        "seconds": round(seconds, 3),
        "per_second": round(acked / seconds, 1) if seconds else None,
        "codes": codes,
    }


def read_all(
    url: str, count: int, prefix: str, run: str, workers: int, timeout: float, deadline: float
) -> dict[str, Any]:
    """GET every key (linearizable, the default) and compare it with its expected value."""
    started = time.monotonic()
    stop = started + deadline
    codes: dict[str, int] = {}
    wrong: dict[str, Any] = {}

    def one(i: int) -> None:
        key = key_of(prefix, i)
        status, got = 0, None
        while time.monotonic() < stop:
            status, _, body = lab_probe.request(
                f"{url}/kv/{urllib.parse.quote(key, safe='')}", timeout=timeout
            )
            if status in (200, 404):
                got = json.loads(body).get("value") if status == 200 else None
                break
            time.sleep(0.1)  # 503 while HAProxy or a node is busy: ask again
        count_code(codes, status)
        if status != 200 or got != value_of(run, i):
            with _LOCK:
                wrong[key] = {"status": status, "value": got}

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(count)))
    return {
        "count": count,
        "ok": count - len(wrong),
        "wrong_count": len(wrong),
        "wrong": dict(sorted(wrong.items())[:20]),
        "seconds": round(time.monotonic() - started, 3),
        "codes": codes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["write", "read"])
    parser.add_argument("url")
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--prefix", default="bulk-")
    parser.add_argument("--run", required=True)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=10.0, help="per request")
    parser.add_argument("--deadline", type=float, default=240.0, help="for the whole run")
    args = parser.parse_args(argv)
    action = write_all if args.command == "write" else read_all
    out = action(
        args.url, args.count, args.prefix, args.run, args.workers, args.timeout, args.deadline
    )
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
