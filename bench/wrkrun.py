"""Run wrk with bench/wrk/kv.lua and read the JSON line its ``done()`` prints."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

LUA_SCRIPT = Path(__file__).resolve().parent / "wrk" / "kv.lua"
MARKER = "WRK-JSON "


class WrkError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class WrkResult:
    duration_s: float
    requests: int
    ok: int
    non2xx: int
    socket_errors: int
    latency_us: dict[str, float] = field(default_factory=dict)

    @property
    def ok_per_s(self) -> float:
        """Successful (2xx) requests per second: the throughput every table reports."""
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def errors(self) -> int:
        return self.non2xx + self.socket_errors

    def latency_ms(self, name: str) -> float:
        return float(self.latency_us.get(name, 0.0)) / 1000.0

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["ok_per_s"] = round(self.ok_per_s, 1)
        return d


def parse_wrk_output(text: str, marker: str = MARKER) -> WrkResult:
    """The result from wrk's stdout: the last ``WRK-JSON {...}`` line that kv.lua printed
    (or a line after another ``marker`` in the same shape: bench/client_load.py's)."""
    lines = [ln for ln in text.splitlines() if ln.startswith(marker)]
    if not lines:
        raise WrkError(f"no {marker.strip()} line in the output (did the load start?)")
    try:
        data = json.loads(lines[-1][len(marker) :])
        errors = data["errors"]
        return WrkResult(
            duration_s=int(data["duration_us"]) / 1e6,
            requests=int(data["requests"]),
            ok=int(data["ok"]),
            non2xx=int(data["non2xx"]),
            # wrk's "status" errors are the non-2xx/3xx answers, already in non2xx.
            socket_errors=sum(int(errors[k]) for k in ("connect", "read", "write", "timeout")),
            latency_us={k: float(v) for k, v in data["latency_us"].items()},
        )
    except (ValueError, KeyError, TypeError) as e:
        raise WrkError(f"malformed WRK-JSON line: {e}") from e


def wrk_argv(
    url: str,
    *,
    connections: int,
    seconds: float,
    script_args: dict[str, str],
    threads: int = 2,
    timeout_s: float = 5.0,
) -> list[str]:
    threads = max(1, min(threads, connections))
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
    ]
    argv += [f"{k}={v}" for k, v in script_args.items()]
    return argv


def run_wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    script_args: dict[str, str],
    threads: int = 2,
) -> WrkResult:
    """One bounded wrk run against ``url`` (loopback only)."""
    if not url.startswith(("http://127.0.0.1:", "https://127.0.0.1:")):
        raise ValueError(f"benchmarks only send traffic to 127.0.0.1, not {url}")
    argv = wrk_argv(
        url, connections=connections, seconds=seconds, script_args=script_args, threads=threads
    )
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise WrkError(f"wrk did not finish within {seconds + 60:.0f}s") from e
    if proc.returncode != 0:
        raise WrkError(f"wrk exited {proc.returncode}: {proc.stderr.strip()[:500]}")
    return parse_wrk_output(proc.stdout)


def run_wrk_sampled(
    argv: list[str], seconds: float, counters: Callable[[int], dict[str, float]]
) -> tuple[WrkResult, dict[str, float]]:
    """Run wrk (``argv``, a ``seconds`` run) and read ``counters(wrk's pid)`` (CPU times and
    the like, each growing) at 20% and at 80% of the run: wrk's result, and how much each
    counter grew over that middle 60%, with ``elapsed`` the seconds between the two reads.
    ``WrkError`` when wrk fails or a counted process ended before the second read."""
    wrk = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    grown: dict[str, float] = {}

    def measure() -> None:
        time.sleep(seconds * 0.2)
        try:
            before, started = counters(wrk.pid), time.monotonic()
            time.sleep(seconds * 0.6)
            after = counters(wrk.pid)
        except OSError:
            return  # a process ended early: the run is reported as failed below
        grown.update({name: after[name] - before[name] for name in after})
        grown["elapsed"] = time.monotonic() - started

    sampler = threading.Thread(target=measure)
    sampler.start()
    try:
        out, err = wrk.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        wrk.kill()
        wrk.communicate()
        raise
    finally:
        sampler.join()
    if wrk.returncode != 0 or not grown:
        raise WrkError(f"wrk failed ({wrk.returncode}): {err.strip()[:300]}")
    return parse_wrk_output(out), grown
