"""``compact_json`` writes what ``json.dumps`` with the same options writes, byte for byte: log
entries must encode alike on every node and release."""

from __future__ import annotations

import json
import math

import pytest

from raftnode.kv.commands import compact_json

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
