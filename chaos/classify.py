"""How one raw HTTP answer ends an operation (see ``chaos.history`` for the outcomes).

Writes: 200 ok; 409 CAS mismatch, a refused connection, raftnode's documented 503 (JSON
``unavailable``: nothing was done), 507 ``disk_full`` (refused before proposing) and other 4xx
fail; timeouts, 504, other 5xx and a connection lost after sending info. Reads: 200 and 404 ok,
an answer lost after sending info, any other answer fail. The client-library path
(``chaos.library_client``) classifies each of the library's attempts with these too.
"""

from __future__ import annotations

from .history import Outcome
from .http_client import Answer


def classify_write(answer: Answer) -> Outcome:
    if answer.status == 200:
        return "ok"
    if answer.status == 0:
        return "info" if answer.sent else "fail"
    if answer.status == 409:
        return "fail"
    if answer.status == 503 and _error_code(answer) == "unavailable":
        return "fail"
    if answer.status == 507 and _error_code(answer) == "disk_full":
        return "fail"  # refused before anything was proposed (kv/service.py)
    if 400 <= answer.status < 500:
        return "fail"  # 400/413/404: refused before doing anything
    return "info"  # 504, 502, HAProxy's 503, 500: may or may not have applied


def classify_read(answer: Answer) -> Outcome:
    if answer.status in (200, 404):
        return "ok"
    return "info" if answer.status == 0 and answer.sent else "fail"


def _error_code(answer: Answer) -> str | None:
    body = answer.json()
    return body.get("error") if isinstance(body, dict) else None
