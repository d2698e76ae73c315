"""The Server-Sent Events of a watch: one event per change, ``id`` on a revision's last."""

from __future__ import annotations

import json

from raftnode.http.watch_stream import encode_changes
from raftnode.kv.history import Change


def test_changes_of_one_revision_carry_the_id_on_the_last_only() -> None:
    text = encode_changes(
        [
            Change(7, "put", "a", "1", 7, 7, 1),
            Change(8, "put", "b", "2", 3, 8, 4),
            Change(8, "delete", "c", None, 0, 8, 0),
        ]
    ).decode()
    events = [block.splitlines() for block in text.split("\n\n") if block]
    assert [e[0] for e in events] == ["id: 7", "event: put", "id: 8"]
    assert events[1][1].startswith("data: ") and events[2][1] == "event: delete"
    put = json.loads(events[1][1].removeprefix("data: "))
    assert put == {"key": "b", "value": "2", "create_revision": 3, "mod_revision": 8, "version": 4}
    deleted = json.loads(events[2][2].removeprefix("data: "))
    assert deleted == {"key": "c", "create_revision": 0, "mod_revision": 8, "version": 0}


def test_a_value_with_newlines_stays_one_data_line() -> None:
    text = encode_changes([Change(1, "put", "k", "two\nlines\r\n", 1, 1, 1)]).decode()
    lines = text.split("\n")
    data = [line for line in lines if line.startswith("data: ")]
    assert len(data) == 1 and json.loads(data[0][6:])["value"] == "two\nlines\r\n"
