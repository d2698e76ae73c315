"""``compact_json`` and ``parse_json`` write and read exactly what ``json.dumps`` and
``json.loads`` do, byte for byte and error for error: log entries must encode and decode alike
on every node and release, and a client's bad body must get ``json``'s own message."""

from __future__ import annotations

import json
import math

import pytest

from raftnode.json_text import compact_json, parse_json

SAMPLES: list[object] = [
    {"op": "put", "key": "bench-1", "value": "x" * 100, "id": None, "lease": 0},
    {"key": "é ü 日本", "sep": "\u2028\u2029", "ctl": '\x00\x1f"\\/'},
    "a lone \ud800 surrogate",
    [1, [2, {"a": None, "b": True, "c": False}], []],
    {},
    10**30,
    -(2**63),
    1.5,
    -0.0,
    1e300,
    math.inf,
    -math.inf,
    {1: "int key", 2.5: "float key", False: "bool key", None: "null key"},
    ("a", "tuple"),
]


@pytest.mark.parametrize("obj", SAMPLES, ids=range(len(SAMPLES)))
def test_compact_json_matches_json_dumps(obj: object) -> None:
    assert compact_json(obj) == json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def test_nan_is_written_as_json_dumps_writes_it() -> None:
    assert compact_json({"x": math.nan}) == '{"x":NaN}'


def test_what_json_cannot_encode_is_refused_and_the_next_call_still_works() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        compact_json({"ok": 1, "bad": object()})
    with pytest.raises(TypeError):
        compact_json({b"bytes key": 1})
    assert compact_json({"ok": [1, 2]}) == '{"ok":[1,2]}'


PARSED: list[bytes] = [
    b'{"op":"put","k":"bench-1","v":"' + b"x" * 100 + b'","i":"id-1","t":1733400000.123456}',
    compact_json({"key": "é ü 日本", "sep": "\u2028\u2029", "ctl": '\x00\x1f"\\/'}).encode(),
    b'{"a":{"b":[1,2.5,-0.0,1e300,NaN,Infinity,-Infinity,true,false,null]}}',
    b'{"dup":1,"dup":2}',
    b'{"escaped lone surrogate":"\\ud800"}',
    b'{"raw surrogate bytes":"\xed\xa0\x80"}',  # json.loads decodes with surrogatepass
    b"{}",
    b' {"leading":"space"}',
    b'{"trailing":"space"} \r\n\t',
    b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark: json.loads refuses it
    '{"utf-16":"le"}'.encode("utf-16-le"),
    '{"utf-16":"with bom"}'.encode("utf-16"),
    '{"utf-32":"be"}'.encode("utf-32-be"),
    b"[1,2]",
    b'"a string"',
    b"42",
]


BROKEN: list[bytes] = [
    b"",
    b"{",
    b'{"a":1',
    b'{"a":1}x',
    b'{"a":1}{"b":2}',
    b'{"a":01}',
    b"{'single':'quotes'}",
    b'{"a":"\xff"}',  # not UTF-8
    b'{"a":"\\x41"}',
    b'{"control":"\x01"}',
    b"{" * 100_000,  # deeper than the recursion limit
    b"\x00\x00\x00",
    b"{\x00",
]


@pytest.mark.parametrize("data", PARSED, ids=range(len(PARSED)))
def test_parse_json_reads_what_json_loads_reads(data: bytes) -> None:
    expected = json.loads(data)
    got = parse_json(data)
    assert repr(got) == repr(expected)  # repr: NaN and -0.0 compare as written
    assert type(got) is type(expected)


@pytest.mark.parametrize("data", BROKEN, ids=range(len(BROKEN)))
def test_parse_json_refuses_what_json_loads_refuses_with_its_message(data: bytes) -> None:
    with pytest.raises(BaseException) as expected:
        json.loads(data)
    with pytest.raises(expected.type) as got:
        parse_json(data)
    assert str(got.value) == str(expected.value)


def test_parse_json_keeps_no_state_between_calls() -> None:
    # The C scanner memoizes object keys within one call; a failed call must not leak
    # into the next.
    with pytest.raises(ValueError):
        parse_json(b'{"k":1,"k2":')
    assert parse_json(b'{"k":1,"k2":2}') == {"k": 1, "k2": 2}
