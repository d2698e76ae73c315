"""Pure parts of issue 18's rows: the watch stream parsers, requests, and the table's numbers."""

import argparse
import base64
import json

import pytest

from bench.app_bench import AppBench, rates, ratio, spread
from bench.watch_fanout import (
    FanoutResult,
    etcd_seqs,
    percentile,
    put_request,
    raftnode_seqs,
    watch_request,
)


def test_raftnode_sse_parser_takes_complete_put_events_and_keeps_the_rest() -> None:
    buf = (
        b'event: put\ndata: {"key":"p/k1","value":"7","mod_revision":9}\n\n'
        b'event: progress\ndata: {"revision": 9}\nid: 9\n\n'
        b'id: 10\nevent: put\ndata: {"key":"p/k2","value":"12","mod_revision":10}\n\n'
        b'event: put\ndata: {"key":"p/k3","val'
    )
    seqs, rest = raftnode_seqs(buf)
    assert seqs == [7, 12]
    assert rest == b'event: put\ndata: {"key":"p/k3","val'
    more, rest = raftnode_seqs(rest + b'ue":"13"}\n\n')
    assert more == [13] and rest == b""


def test_etcd_watch_parser_reads_created_and_base64_values() -> None:
    def line(result: dict[str, object]) -> bytes:
        return json.dumps({"result": result}).encode() + b"\n"

    ev = {"kv": {"key": "cC9h", "value": base64.b64encode(b"41").decode()}}
    ev2 = {"kv": {"key": "cC9i", "value": base64.b64encode(b"42").decode()}}
    buf = line({"created": True}) + line({"events": [ev, ev2]}) + b'{"result":'
    seqs, rest, created = etcd_seqs(buf)
    assert (seqs, rest, created) == ([41, 42], b'{"result":', True)
    assert etcd_seqs(b"") == ([], b"", False)


def test_watch_and_put_requests_per_dialect() -> None:
    raw = watch_request("etcd", "wf/", "127.0.0.1", 2379)
    body = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert base64.b64decode(body["create_request"]["range_end"]) == b"wf0"
    assert raw.startswith(b"POST /v3/watch HTTP/1.1\r\n")
    assert watch_request("raftnode", "wf/", "127.0.0.1", 1).startswith(
        b"GET /watch?prefix=wf/ HTTP/1.1\r\n"
    )
    head, body2 = put_request("raftnode", "wf/k1", "5", "127.0.0.1", 1).split(b"\r\n\r\n", 1)
    assert json.loads(body2) == {"key": "wf/k1", "value": "5"}
    assert f"Content-Length: {len(body2)}".encode() in head


def test_refuses_traffic_off_loopback() -> None:
    from bench.watch_fanout import _host_port

    with pytest.raises(ValueError):
        _host_port("http://10.0.0.1:2379")


def test_percentile_spread_and_ratio() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([float(x) for x in range(101)], 99) == 99.0
    assert spread([3.0, 1.0, 2.0]) == "2 (1-3)"
    assert spread([]) == "-"
    assert ratio([2.0, 4.0, 6.0], [2.0, 2.0, 2.0]) == 2.0
    assert ratio([1.0], [0.0]) is None


def _fanout(rate: float, p50: float, seconds: float, missed: int = 0) -> FanoutResult:
    return FanoutResult(
        watchers=10, writes=int(rate * 4), rate=rate, write_errors=0, write_seconds=seconds,
        deliveries=10 * int(rate * 4) - missed, missed=missed, duplicates=0, p50_ms=p50,
        p99_ms=2 * p50, p50_from_send_ms=p50, p99_from_send_ms=2 * p50, client_cpu_pct=[10.0],
    )  # fmt: skip


def test_watch_rates_parse_as_a_list_of_positive_numbers() -> None:
    assert rates("100") == [100.0]
    assert rates("100,250,1000") == [100.0, 250.0, 1000.0]
    for bad in ("", "100,x", "0", "-5", "100,,250"):
        with pytest.raises(argparse.ArgumentTypeError):
            rates(bad)


def test_achieved_rate_is_acknowledged_writes_per_second() -> None:
    assert _fanout(250.0, 5.0, 4.0).achieved_rate == 250.0
    assert _fanout(1000.0, 5.0, 8.0).achieved_rate == 500.0  # took twice as long: fell behind
    assert _fanout(1000.0, 5.0, 0.0).achieved_rate == 0.0


def test_one_fanout_row_per_rate_with_latency_and_achieved_rate() -> None:
    args = argparse.Namespace(
        watch_rate=[100.0, 500.0], watchers=10, connections=16, runs=1, seconds=4.0,
        watch_procs=1, rows=["watch"],
    )  # fmt: skip
    bench = AppBench(args, {})
    bench.fanout = {
        (100.0, "raftnode"): [_fanout(100.0, 5.0, 4.0)],
        (100.0, "etcd"): [_fanout(100.0, 10.0, 4.0)],
        (500.0, "raftnode"): [_fanout(500.0, 20.0, 4.0)],
        (500.0, "etcd"): [_fanout(500.0, 40.0, 8.0, missed=3)],
    }
    rows = {r["row"]: r for r in bench.table_rows()}
    assert list(rows) == [
        "watch 10x100/s p50 (ms)", "watch 10x100/s p99 (ms)", "watch 10x100/s achieved (writes/s)",
        "watch 10x500/s p50 (ms)", "watch 10x500/s p99 (ms)", "watch 10x500/s achieved (writes/s)",
    ]  # fmt: skip
    assert rows["watch 10x100/s p50 (ms)"]["ratio"] == 0.5
    assert rows["watch 10x500/s achieved (writes/s)"]["etcd"] == [250.0]
    assert rows["watch 10x500/s p50 (ms)"]["errors"] == {"raftnode": 0, "etcd": 3}
    assert "achieved" in bench.table() and json.dumps(bench.to_json())
