"""wrk's output as kv.lua's done() prints it, read back into a result."""

import sys

import pytest

from bench.client_load import MARKER, Tally
from bench.wrkrun import LUA_SCRIPT, WrkError, parse_wrk_output, run_wrk_sampled, wrk_argv

SAMPLE = """Running 3s test @ http://127.0.0.1:20001
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
Requests/sec:   1620.75
WRK-JSON {"duration_us":2000000,"requests":4100,"bytes":846745,"ok":4000,"non2xx":100,\
"errors":{"connect":1,"read":2,"write":0,"status":100,"timeout":3},\
"latency_us":{"min":204,"max":17368,"mean":2933.2,"stdev":2736.5,"p50":1586,"p90":7043,\
"p99":12105,"p999":14809}}
"""


def test_parses_the_json_line() -> None:
    r = parse_wrk_output(SAMPLE)
    assert r.duration_s == 2.0
    assert r.requests == 4100
    assert r.ok == 4000
    assert r.ok_per_s == 2000.0
    # status errors are the non-2xx answers, counted once; socket errors are the rest.
    assert r.non2xx == 100
    assert r.socket_errors == 6
    assert r.errors == 106
    assert r.latency_ms("p50") == pytest.approx(1.586)
    assert r.latency_ms("p99") == pytest.approx(12.105)
    assert r.to_json()["ok_per_s"] == 2000.0


def test_takes_the_last_json_line() -> None:
    first = SAMPLE.replace('"ok":4000', '"ok":1')
    assert parse_wrk_output(first + SAMPLE).ok == 4000


def test_missing_or_malformed_line_is_an_error() -> None:
    with pytest.raises(WrkError, match="no WRK-JSON"):
        parse_wrk_output("Requests/sec: 10\n")
    with pytest.raises(WrkError, match="malformed"):
        parse_wrk_output('WRK-JSON {"duration_us": 1}\n')


def test_argv_passes_script_args_and_bounds() -> None:
    argv = wrk_argv(
        "http://127.0.0.1:1/",
        connections=1,
        seconds=2.6,
        script_args={"dialect": "etcd", "mode": "read"},
        threads=2,
    )
    assert argv[:3] == ["wrk", "-t1", "-c1"]
    assert "-d3s" in argv
    assert str(LUA_SCRIPT) in argv
    assert argv[-3:] == ["--", "dialect=etcd", "mode=read"]
    assert LUA_SCRIPT.exists()


def test_the_client_loads_line_reads_as_wrks_with_its_cpu_per_write() -> None:
    tally = Tally(latencies_us=[1000.0, 2000.0, 3000.0, 4000.0], errors=1, cpu_s=0.002)
    line = tally.line(2.0)
    result = parse_wrk_output("noise\n" + line + "\n", MARKER)
    assert (result.ok, result.non2xx, result.requests) == (4, 1, 5)
    assert result.ok_per_s == 2.0 and result.latency_ms("p50") == 3.0
    assert '"cpu_us_per_ok": 500.0' in line


def _stand_in(exit_code: int = 0) -> list[str]:
    """A process standing in for wrk: runs a second, prints SAMPLE, exits ``exit_code``."""
    code = f"import sys, time; time.sleep(1); print({SAMPLE!r}); sys.exit({exit_code})"
    return [sys.executable, "-c", code]


def test_sampled_run_reads_the_counters_over_the_middle_of_the_run() -> None:
    reads: list[int] = []

    def counters(pid: int) -> dict[str, float]:
        reads.append(pid)
        return {"reads": float(len(reads))}

    result, grown = run_wrk_sampled(_stand_in(), 1.0, counters)
    assert result.ok == 4000
    assert len(reads) == 2 and reads[0] == reads[1] > 0  # wrk's pid, twice
    assert grown["reads"] == 1.0
    assert 0.5 <= grown["elapsed"] < 1.0  # 60% of the run, read at 20% and 80%


def test_sampled_run_fails_when_wrk_fails_or_a_counted_process_is_gone() -> None:
    with pytest.raises(WrkError, match=r"wrk failed \(3\)"):
        run_wrk_sampled(_stand_in(exit_code=3), 1.0, lambda pid: {"x": 0.0})

    def gone(pid: int) -> dict[str, float]:
        raise OSError("no such process")

    with pytest.raises(WrkError, match="wrk failed"):
        run_wrk_sampled(_stand_in(), 1.0, gone)
