from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from raftnode.kv.commands import (
    ApplyResult,
    Command,
    CommandResult,
    Compare,
    FormatUpgrade,
    Txn,
    TxnOp,
    TxnResult,
)
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
        return _command(self.raw(Command("put", k, v, **kw).encode()))  # type: ignore[arg-type]

    def delete(self, k: str, **kw: object) -> CommandResult:
        return _command(self.raw(Command("delete", k, **kw).encode()))  # type: ignore[arg-type]

    def raw(self, data: bytes) -> ApplyResult:
        self.index += 1
        return self.store.apply(self.index, data)

    def upgrade(self) -> CommandResult:
        """The ``FormatUpgrade`` entry: from here on the store counts versions."""
        return _command(self.raw(FormatUpgrade().encode()))

    def txn(
        self,
        compare: list[Compare],
        success: list[TxnOp],
        failure: list[TxnOp] | None = None,
        request_id: str | None = None,
    ) -> TxnResult:
        txn = Txn(tuple(compare), tuple(success), tuple(failure or ()), request_id, 1.0)
        result = self.raw(txn.encode())
        assert isinstance(result, TxnResult), result
        return result


def _command(result: ApplyResult) -> CommandResult:
    assert isinstance(result, CommandResult), result
    return result
