"""bench.tls_floor: its responder answers over plaintext and TLS, and the summary is the
medians and differences the note quotes."""

from __future__ import annotations

import socket
import ssl
import sys
import urllib.request
from pathlib import Path

import pytest

from bench import tls_floor
from bench.peers.tls import make_bench_tls
from bench.procs import ProcessGroup, wait_until
from raftnode.devcluster import free_ports


@pytest.mark.parametrize("side", tls_floor.SIDES)
def test_the_responder_answers_every_request_with_its_body(tmp_path: Path, side: str) -> None:
    tls = make_bench_tls(tmp_path, [1], [])
    (port,) = free_ports(1)
    argv = [sys.executable, "-m", "bench.tls_floor", "--serve", "--port", str(port)]
    argv += ["--work", "2"]
    context = None
    if side == "tls":
        argv += ["--cert", str(tls.cert("raftnode-1")), "--key", str(tls.key("raftnode-1"))]
        context = ssl.create_default_context(cafile=str(tls.ca_file))
    scheme = "https" if side == "tls" else "http"
    url = f"{scheme}://127.0.0.1:{port}/v1/kv/bench-0"
    with ProcessGroup() as procs:
        procs.spawn(argv, tmp_path / "server.log")
        wait_until("responder", lambda: _listening(port), 20.0)
        for _ in range(3):  # one connection per urlopen: each is answered in full
            with urllib.request.urlopen(url, timeout=5, context=context) as answer:
                assert answer.status == 200
                assert answer.read() == tls_floor.BODY


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def test_summary_takes_medians_and_what_tls_adds() -> None:
    def run(ok: float, server: float, wrk: float) -> dict[str, float]:
        return {"ok_per_s": ok, "server_us": server, "wrk_us": wrk}

    runs = {
        "plaintext": [run(1000, 80, 20), run(1100, 70, 18), run(900, 90, 22)],
        "tls": [run(800, 95, 30), run(950, 85, 26), run(700, 100, 31)],
    }
    s = tls_floor.summarize(runs)
    assert s["plaintext_ok_per_s"] == 1000 and s["tls_ok_per_s"] == 800
    assert s["tls_adds_server_us"] == 95 - 80
    assert s["tls_adds_wrk_us"] == 30 - 20
    assert s["ratio"] == pytest.approx(0.8)
    assert s["ratio_per_round"] == [0.8, round(950 / 1100, 3), round(700 / 900, 3)]


@pytest.mark.parametrize(
    "argv", [["--work", "a,1"], ["--work", "-1"], ["--rounds", "0"], ["--seconds", "1"]]
)
def test_bad_arguments_are_refused_by_name(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        tls_floor.parse_args(argv)
