"""Client requests are decoded strictly: every malformed body, key or value is a 400 that names
the problem (never a 500), and nothing reaches the log."""

from __future__ import annotations

import pytest

from raftnode.config import Limits
from raftnode.http import requests
from raftnode.http.errors import ApiError

LIMITS = Limits()


def refused(call: object, code: str, *words: str) -> ApiError:
    assert callable(call)
    with pytest.raises(ApiError) as info:
        call()
    err = info.value
    assert err.status == 400 and err.code == code, err.body()
    for word in words:
        assert word in err.message
    return err


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 200_000,
        b'{"key": ' + b"[" * 200_000,
        b"{" * 5000,
        b'{"key": "k", "value": ' + b'{"a": ' * 3000 + b"1" + b"}" * 3001,
    ],
)
def test_deeply_nested_bodies_are_400(body: bytes) -> None:
    refused(lambda: requests.put_from_post(body, LIMITS), "bad_json")


def test_nesting_the_parser_accepts_is_still_refused_by_type() -> None:
    body = b'{"key": "k", "value": ' + b"[" * 30 + b"]" * 30 + b"}"
    refused(lambda: requests.put_from_post(body, LIMITS), "bad_value", "must be a string")


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("alias\udcff", ("not valid Unicode",)),
        ("a\ud800b", ("not valid Unicode",)),
        ("nul\x00", ("U+0000",)),
        ("line\nbreak", ("U+000A",)),
        ("del\x7f", ("U+007F",)),
        ("c1\x85", ("U+0085",)),
    ],
)
def test_keys_with_invalid_text_or_control_characters_are_400(
    key: str, words: tuple[str, ...]
) -> None:
    refused(lambda: requests.check_key(key, LIMITS), "bad_key", *words)
    refused(lambda: requests.put_from_put(key, b'{"value": "v"}', LIMITS), "bad_key")


def test_lone_surrogates_in_json_are_400() -> None:
    body = b'{"key": "\\ud800", "value": "v"}'
    refused(lambda: requests.put_from_post(body, LIMITS), "bad_key", "lone surrogate")
    body = b'{"key": "k", "value": "\\udfff"}'
    refused(lambda: requests.put_from_post(body, LIMITS), "bad_value", "lone surrogate")
    body = b'{"key": "k", "value": "v", "prev_value": "\\ud83d"}'
    refused(lambda: requests.put_from_post(body, LIMITS), "bad_value")


def test_ordinary_unicode_keys_and_values_pass() -> None:
    cmd = requests.put_from_post('{"key": "ключ/😀", "value": "a\\nb\\u0000"}'.encode(), LIMITS)
    assert cmd.key == "ключ/😀" and cmd.value == "a\nb\x00"
    assert requests.check_key("\U0001f600 emoji pair", LIMITS)
