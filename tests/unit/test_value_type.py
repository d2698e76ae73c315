"""``@value_type`` classes compare, hash and copy as the frozen dataclasses they replace."""

from __future__ import annotations

import dataclasses

from raftnode.kv.commands import Command, CommandResult, KeyRevisions
from raftnode.raft.types import Entry, EntryType, Message, MessageType
from raftnode.value_type import value_type


@value_type
class _Point:
    x: int
    y: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class _FrozenPoint:
    x: int
    y: int = 0


def test_equality_and_hash_are_a_frozen_dataclass_s() -> None:
    assert _Point(1, 2) == _Point(1, 2)
    assert _Point(1, 2) != _Point(2, 1)
    assert hash(_Point(1, 2)) == hash(_FrozenPoint(1, 2))
    assert len({_Point(1), _Point(1), _Point(2)}) == 2


def test_instances_have_slots_and_no_dict() -> None:
    assert _Point.__dict__["__slots__"] == ("x", "y")
    assert not hasattr(_Point(1), "__dict__")


def test_replace_builds_a_new_value() -> None:
    p = _Point(1, 2)
    q = dataclasses.replace(p, y=5)
    assert (p, q) == (_Point(1, 2), _Point(1, 5))


def test_the_write_path_s_values_are_value_types_and_hashable() -> None:
    values: list[Command | CommandResult | Entry | Message] = [
        Command("put", "k", "v"),
        CommandResult(ok=True, revision=3, key_revisions=KeyRevisions(1, 3, 2)),
        Entry(term=2, index=7, type=EntryType.NORMAL, data=b"x"),
        Message(type=MessageType.APPEND, to=2, frm=1, term=2),
    ]
    for value in values:
        assert hash(value) == hash(dataclasses.replace(value))
