from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from raftnode.kv.commands import Command, CommandResult
from raftnode.kv.store import KeyValueStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[KeyValueStore]:
    s = KeyValueStore.open(tmp_path / "kv.sqlite")
    yield s
    s.close()


class Applier:
    """Feeds commands with increasing indexes, like the runtime."""

    def __init__(self, store: KeyValueStore, start: int = 0) -> None:
        self.store = store
        self.index = start

    def put(self, k: str, v: str, **kw: object) -> CommandResult:
        self.index += 1
        return self.store.apply(self.index, Command("put", k, v, **kw).encode())  # type: ignore[arg-type]

    def delete(self, k: str, **kw: object) -> CommandResult:
        self.index += 1
        return self.store.apply(self.index, Command("delete", k, **kw).encode())  # type: ignore[arg-type]
