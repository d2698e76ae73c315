"""A store and a snapshot written by the previous release (``PREVIOUS_RELEASE``, its own code
run in a subprocess) open, restore and upgrade on this one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest

from raftnode.kv.commands import KeyRevisions
from raftnode.kv.store import KeyValueStore, inspect_snapshot
from tests.unit.kv.conftest import Applier

REPO = Path(__file__).resolve().parents[3]
PREVIOUS_RELEASE = next(
    line.strip()
    for line in (REPO / "PREVIOUS_RELEASE").read_text().splitlines()
    if line.strip() and not line.startswith("#")
)

WRITE_WITH_PREVIOUS_RELEASE = """
import sys
from pathlib import Path
from raftnode.kv.commands import Command
from raftnode.kv.store import KeyValueStore
store = KeyValueStore.open(Path(sys.argv[1]))
writes = [("put", "a", "1"), ("put", "b", "1"), ("put", "a", "2"), ("delete", "b", None),
          ("put", "b", "2"), ("put", "c", "1")]
for index, (op, key, value) in enumerate(writes, start=1):
    store.apply(index, Command(op, key, value, request_id=f"r{index}", stamp=1.0).encode())
store.commit()
store.snapshot_to(Path(sys.argv[2]))
store.close()
"""


@pytest.fixture(scope="module")
def previous_files() -> Iterator[tuple[Path, Path]]:
    """(a live store file, a snapshot) written by the previous release's own store code."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", PREVIOUS_RELEASE, "raftnode"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert archive.returncode == 0, archive.stderr.decode(errors="replace")
    with tempfile.TemporaryDirectory(prefix="raftnode-previous-store-") as tmp:
        root = Path(tmp)
        with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
            tar.extractall(root / "src", filter="data")
        store, snapshot = root / "kv.sqlite", root / "snapshot.db"
        env = {**os.environ, "PYTHONPATH": str(root / "src")}
        run = subprocess.run(
            [sys.executable, "-c", WRITE_WITH_PREVIOUS_RELEASE, str(store), str(snapshot)],
            env=env,
            cwd=root,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 0, run.stderr.decode(errors="replace")
        yield store, snapshot


def state(store: KeyValueStore) -> dict[str, tuple[str, int, int, int | None]]:
    return {k: (r.value, r.create_revision, r.mod_revision, r.version) for k, r in store.list()}


EXPECTED_V1 = {"a": ("2", 1, 3, None), "b": ("2", 5, 5, None), "c": ("1", 6, 6, None)}


def test_the_previous_release_store_opens_and_upgrades_through_the_log(
    previous_files: tuple[Path, Path], tmp_path: Path
) -> None:
    path = tmp_path / "kv.sqlite"
    path.write_bytes(previous_files[0].read_bytes())
    with KeyValueStore.open(path) as store:
        assert store.format_version == 1 and store.applied_index == 6 and store.revision == 6
        assert state(store) == EXPECTED_V1
        a = Applier(store, 6)
        replay = a.put("a", "2", request_id="r3", stamp=9.0)  # remembered by the old release
        assert replay.replayed and replay.revision == 3 and replay.key_revisions is None
        a.upgrade()
        r = a.put("a", "3")
        assert r.key_revisions == KeyRevisions(1, 7, 2)
        store.commit()
    with KeyValueStore.open(path) as store:
        assert store.format_version == 2
        assert state(store)["a"] == ("3", 1, 7, 2) and state(store)["c"] == ("1", 6, 6, 1)
    assert inspect_snapshot(path, verify=True).format_version == 2


def test_the_previous_release_snapshot_restores_and_a_new_one_round_trips(
    previous_files: tuple[Path, Path], tmp_path: Path
) -> None:
    assert inspect_snapshot(previous_files[1], verify=True).format_version == 1
    with KeyValueStore.open(tmp_path / "kv.sqlite") as store:
        store.restore_from(previous_files[1])
        assert state(store) == EXPECTED_V1 and store.applied_index == 6
        a = Applier(store, 6)
        a.upgrade()
        a.put("d", "1")
        store.commit()
        info = store.snapshot_to(tmp_path / "new.db")
        expected = state(store)
    assert info.format_version == 2
    with KeyValueStore.open(tmp_path / "other.sqlite") as other:
        other.restore_from(tmp_path / "new.db")
        assert state(other) == expected
        assert json.loads(json.dumps(expected))["d"] == ["1", 7, 7, 1]
