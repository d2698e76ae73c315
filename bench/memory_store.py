"""The former in-memory key-value state machine: the baseline of ``bench/store_backends.py``
and the unit tests' reference model of the key-value semantics (``tests/unit/kv``). Not part of
raftnode: the runtime's state machine is ``raftnode.kv.store.KeyValueStore``.

Keys live in a dict for lookups plus a sorted list (kept with ``bisect``) for prefix listing.
Every successful mutation bumps a global ``revision``; each key remembers the revisions at which
it was created and last modified. Apply is deterministic: every node reaches the same state
from the same log.
"""

from __future__ import annotations

import bisect
import json
import logging

from raftnode.kv.commands import Command, CommandResult
from raftnode.kv.store import KeyRecord

log = logging.getLogger(__name__)

SNAPSHOT_FORMAT = 1


class MemoryKeyValueStore:
    """The pre-issue-8 store: every key in a dict, snapshots as one JSON document of its own
    (``snapshot``/``restore`` between two of these only: no raftnode node installs them).

    Superseded by ``raftnode.kv.store.KeyValueStore`` (on disk), whose results it must match
    command for command (``test_same_results_as_the_former_memory_store``).
    """

    def __init__(self) -> None:
        self._data: dict[str, KeyRecord] = {}
        self._keys: list[str] = []
        self.revision = 0

    def __len__(self) -> int:
        return len(self._data)

    # -- StateMachine protocol -------------------------------------------------------------

    def apply(self, index: int, data: bytes) -> CommandResult:
        try:
            cmd = Command.decode(data)
        except (ValueError, KeyError, TypeError) as e:
            # Validated before proposing, so this is a bug or a foreign entry: skip it the
            # same way on every node.
            log.error(
                "undecodable command skipped", extra={"fields": {"index": index, "error": str(e)}}
            )
            return CommandResult(ok=False, revision=self.revision, error="bad_command")
        current = self._data.get(cmd.key)
        current_value = current.value if current is not None else None
        if cmd.cas and current_value != cmd.prev_value:
            return CommandResult(
                ok=False,
                revision=self.revision,
                current_value=current_value,
                existed=current is not None,
                error="cas_mismatch",
            )
        if cmd.op == "put":
            assert cmd.value is not None
            self.revision += 1
            if current is None:
                self._data[cmd.key] = KeyRecord(cmd.value, self.revision, self.revision)
                bisect.insort(self._keys, cmd.key)
            else:
                current.value = cmd.value
                current.mod_revision = self.revision
            return CommandResult(
                ok=True,
                revision=self.revision,
                prev_value=current_value,
                existed=current is not None,
            )
        if current is None:
            return CommandResult(ok=False, revision=self.revision, error="not_found")
        self.revision += 1
        del self._data[cmd.key]
        i = bisect.bisect_left(self._keys, cmd.key)
        del self._keys[i]
        return CommandResult(
            ok=True, revision=self.revision, prev_value=current_value, existed=True
        )

    def snapshot(self) -> bytes:
        items = [[k, r.value, r.create_revision, r.mod_revision] for k, r in self._data.items()]
        return json.dumps(
            {"format": SNAPSHOT_FORMAT, "revision": self.revision, "items": items},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()

    def restore(self, data: bytes) -> None:
        if not data:
            self._data, self._keys, self.revision = {}, [], 0
            return
        obj = json.loads(data)
        if obj.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"unknown snapshot format {obj.get('format')!r}")
        self._data = {k: KeyRecord(v, c, m) for k, v, c, m in obj["items"]}
        self._keys = sorted(self._data)
        self.revision = int(obj["revision"])

    # -- reads -----------------------------------------------------------------------------

    def get(self, key: str) -> KeyRecord | None:
        return self._data.get(key)

    def list(
        self, prefix: str = "", limit: int | None = None, start_after: str | None = None
    ) -> list[tuple[str, KeyRecord]]:
        """Keys starting with ``prefix`` in sorted order, at most ``limit`` of them."""
        lo = bisect.bisect_left(self._keys, prefix)
        if start_after is not None and start_after >= prefix:
            lo = bisect.bisect_right(self._keys, start_after)
        out: list[tuple[str, KeyRecord]] = []
        for k in self._keys[lo:]:
            if not k.startswith(prefix) or (limit is not None and len(out) >= limit):
                break
            out.append((k, self._data[k]))
        return out
