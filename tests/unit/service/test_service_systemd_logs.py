"""sd_notify datagrams and structured log lines."""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

from raftnode.logs import JsonFormatter, LogfmtFormatter
from raftnode.systemd_notify import SystemdNotifier


def test_notify_sends_datagrams(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    try:
        n = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
        assert n.enabled and n.watchdog_seconds == 2.0
        assert n.ready("role=leader term=2")
        msg = sock.recv(4096).decode()
        assert "READY=1" in msg.splitlines() and "STATUS=role=leader term=2" in msg
        assert f"MAINPID={os.getpid()}" in msg
        n.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
        n.stopping()
        assert sock.recv(4096) == b"STOPPING=1"
        n.close()
    finally:
        sock.close()


def test_notify_is_a_no_op_outside_systemd() -> None:
    n = SystemdNotifier({})
    assert not n.enabled and n.watchdog_seconds is None
    assert not n.ready("x")


def test_watchdog_for_another_pid_is_ignored() -> None:
    n = SystemdNotifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert n.watchdog_seconds is None


def record(message: str, /, **fields: object) -> logging.LogRecord:
    r = logging.LogRecord("raftnode.node", logging.INFO, __file__, 1, message, (), None)
    r.fields = fields
    return r


def test_logfmt_one_line_with_quoting() -> None:
    line = LogfmtFormatter().format(record("leader changed", term=3, leader=2, note='a "b" c'))
    assert "\n" not in line
    assert 'msg="leader changed"' in line
    assert "term=3 leader=2" in line
    assert 'note="a \\"b\\" c"' in line
    assert line.startswith("ts=") and " level=info " in line


def test_json_lines() -> None:
    obj = json.loads(JsonFormatter().format(record("election started", term=4, msg="clash")))
    assert obj["msg"] == "election started" and obj["term"] == 4 and obj["field_msg"] == "clash"
