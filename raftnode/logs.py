"""Structured logs: one line per event, logfmt (``key=value``) or JSON.

Code logs an event with a short message and its fields::

    log.info("leader changed", extra={"fields": {"term": 3, "leader": 2}})

and the formatter renders ``ts=... level=info logger=raftnode.node msg="leader changed" term=3
leader=2`` (or the same as one JSON object per line).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_RESERVED = {"ts", "level", "logger", "msg"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    extra = getattr(record, "fields", None)
    out: dict[str, Any] = dict(getattr(record, "node_fields", {}))
    if isinstance(extra, dict):
        out.update(extra)
    return out


def _timestamp(record: logging.LogRecord) -> str:
    t = time.gmtime(record.created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


def _logfmt_value(v: Any) -> str:
    s = (
        v
        if isinstance(v, str)
        else json.dumps(v, default=str)
        if not isinstance(v, (int, float))
        else str(v)
    )
    if s == "" or any(ch in s for ch in ' "=\\\n\t'):
        return json.dumps(s)
    return s


class LogfmtFormatter(logging.Formatter):
    """Renders ``ts=... level=... logger=... msg="..." k=v ...``."""

    def format(self, record: logging.LogRecord) -> str:
        parts = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line = " ".join(f"{k}={_logfmt_value(v)}" for k, v in parts.items())
        for k, v in _fields(record).items():
            key = f"field_{k}" if k in _RESERVED else k
            line += f" {key}={_logfmt_value(v)}"
        if record.exc_info:
            line += f" exc={_logfmt_value(self.formatException(record.exc_info))}"
        return line


class JsonFormatter(logging.Formatter):
    """Renders one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in _fields(record).items():
            obj[f"field_{k}" if k in _RESERVED else k] = v
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str)


class NodeFilter(logging.Filter):
    """Adds ``node=<id>`` to every record so lines from several nodes can be told apart."""

    def __init__(self, node_id: int) -> None:
        super().__init__()
        self.node_id = node_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.node_fields = {"node": self.node_id}
        return True


def configure_logging(level: str = "info", fmt: str = "logfmt", node_id: int | None = None) -> None:
    """Send all ``raftnode`` and ``tornado`` logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    if node_id is not None:
        handler.addFilter(NodeFilter(node_id))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Tornado logs every request at INFO; keep those at WARNING unless debugging.
    if level.lower() != "debug":
        logging.getLogger("tornado.access").setLevel(logging.WARNING)


def log_client_request(handler: Any) -> None:
    """Tornado ``log_function`` for the client API: 5xx at WARNING, the rest at DEBUG."""
    status = handler.get_status()
    level = logging.WARNING if status >= 500 else logging.DEBUG
    logger = logging.getLogger("raftnode.http.access")
    if logger.isEnabledFor(level):
        r = handler.request
        logger.log(
            level,
            "request",
            extra={
                "fields": {
                    "method": r.method,
                    "uri": r.uri,
                    "status": status,
                    "ms": round(1000 * r.request_time(), 2),
                    "remote": r.remote_ip,
                }
            },
        )


def log_health_request(handler: Any) -> None:
    """Tornado ``log_function`` for health checks: DEBUG only (load balancers poll often)."""
    logger = logging.getLogger("raftnode.http.health")
    if logger.isEnabledFor(logging.DEBUG):
        r = handler.request
        logger.debug(
            "health check",
            extra={"fields": {"method": r.method, "uri": r.uri, "status": handler.get_status()}},
        )
