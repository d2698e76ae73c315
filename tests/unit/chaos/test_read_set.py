"""The set workload's final read: every element of a set larger than one page, page by page
with ``start_after``; a page that fails starts the read again on the next endpoint."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs, urlsplit

import pytest

from chaos import workload
from chaos.http_client import Answer
from chaos.workload import SET_PAGE, Recorder, WorkloadConfig, read_set

CONFIG = WorkloadConfig(endpoints=("http://a:1", "http://b:1"), run_id="t")
ELEMENTS = [f"e{i:05}" for i in range(2 * SET_PAGE + 123)]


def _serve(monkeypatch: pytest.MonkeyPatch, fail_once_at_page: int | None) -> list[str]:
    asked: list[str] = []
    failed: list[bool] = []

    async def fake_request(
        base: str, method: str, path: str, *args: object, **kw: object
    ) -> Answer:
        query = parse_qs(urlsplit(path).query)
        limit = int(query["limit"][0])
        after = query.get("start_after", [""])[0]
        keys = [CONFIG.set_prefix + e for e in ELEMENTS if CONFIG.set_prefix + e > after]
        page = len(asked) + 1
        asked.append(f"{base} {after[len(CONFIG.set_prefix) :] or '-'}")
        if page == fail_once_at_page and not failed:
            failed.append(True)
            return Answer(503, True, body=b'{"error": "unavailable"}')
        body = {
            "items": [{"key": k, "value": "1"} for k in keys[:limit]],
            "more": len(keys) > limit,
        }
        return Answer(200, True, body=json.dumps(body).encode())

    monkeypatch.setattr(workload, "request", fake_request)
    return asked


def test_every_element_of_a_set_larger_than_a_page_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _serve(monkeypatch, fail_once_at_page=None)
    recorder = Recorder()
    asyncio.run(read_set(CONFIG, recorder))
    (final,) = recorder.operations
    assert final.kind == "read_set" and final.outcome == "ok"
    assert final.result == ELEMENTS
    assert asked == [
        "http://a:1 -",
        f"http://a:1 {ELEMENTS[SET_PAGE - 1]}",
        f"http://a:1 {ELEMENTS[2 * SET_PAGE - 1]}",
    ]


def test_a_failed_page_starts_the_read_again_on_the_next_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked = _serve(monkeypatch, fail_once_at_page=2)
    recorder = Recorder()
    asyncio.run(read_set(CONFIG, recorder))
    (final,) = recorder.operations
    assert final.result == ELEMENTS and final.endpoint == "http://b:1"
    assert [a.split()[0] for a in asked] == ["http://a:1"] * 2 + ["http://b:1"] * 3
