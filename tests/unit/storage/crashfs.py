"""A FileSystem for tests that records every operation and can simulate a power loss.

The model is the strict POSIX one: file contents survive a crash only up to the last fsync of
that file, and a directory entry (a created, renamed or unlinked name) only once the directory
was fsynced. Directories themselves are assumed durable once created.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from raftnode.storage import FileSystem, OpenFile


class SimulatedCrash(Exception):
    """Raised instead of performing the operation chosen by ``crash_before``."""


class CrashableFileSystem(FileSystem):
    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.ops: list[tuple[str, str]] = []
        """(operation, path relative to root) in the order issued."""
        self.crash_before: Callable[[int, str, Path], bool] | None = None
        """Called as (op number, op, path) before each op; True raises SimulatedCrash."""
        self.dsync_flag = None  # a durable write is a "write" then an "fsync" here
        self._load_model()

    def _load_model(self) -> None:
        """Treat everything currently on disk under root as durable."""
        self._next_id = 0
        self._ids: dict[Path, int] = {}
        self._durable_data: dict[int, bytes] = {}
        self._durable_names: dict[Path, dict[str, int]] = {}
        self._handles: dict[int, tuple[OpenFile, int]] = {}
        self.root.mkdir(parents=True, exist_ok=True)
        for dirpath, _dirs, files in os.walk(self.root):
            directory = Path(dirpath)
            names: dict[str, int] = {}
            for name in files:
                file_id = self._new_id(directory / name)
                self._durable_data[file_id] = (directory / name).read_bytes()
                names[name] = file_id
            self._durable_names[directory] = names

    def _new_id(self, path: Path) -> int:
        self._next_id += 1
        self._ids[path] = self._next_id
        return self._next_id

    def _op(self, op: str, path: Path) -> None:
        number = len(self.ops)
        self.ops.append((op, str(path.relative_to(self.root.parent))))
        if self.crash_before is not None and self.crash_before(number, op, path):
            raise SimulatedCrash(f"crash before {op} {path}")

    def names(self, op: str) -> list[str]:
        """Paths of the recorded operations of kind ``op``."""
        return [path for kind, path in self.ops if kind == op]

    # -- the FileSystem interface -------------------------------------------------------------

    def makedirs(self, path: Path) -> bool:
        self._op("makedirs", path)
        created = super().makedirs(path)
        for parent in [path, *path.parents]:
            if parent == self.root.parent:
                break
            self._durable_names.setdefault(parent, {})
        return created

    def open(self, path: Path, *, truncate: bool = False) -> OpenFile:
        self._op("open", path)
        f = super().open(path, truncate=truncate)
        file_id = self._ids.get(path) or self._new_id(path)
        self._handles[f.fd] = (f, file_id)
        return f

    def open_positional(self, path: Path) -> OpenFile:
        self._op("open", path)
        f = super().open_positional(path)
        file_id = self._ids.get(path) or self._new_id(path)
        self._handles[f.fd] = (f, file_id)
        return f

    def write(self, f: OpenFile, data: bytes) -> None:
        self._op("write", f.path)
        super().write(f, data)

    def write_at(self, f: OpenFile, offset: int, data: bytes) -> None:
        self._op("write", f.path)
        super().write_at(f, offset, data)

    def fsync(self, f: OpenFile) -> None:
        self._op("fsync", f.path)
        super().fsync(f)
        self._durable_data[self._handles[f.fd][1]] = f.path.read_bytes()

    def datasync(self, f: OpenFile) -> None:
        self._op("fsync", f.path)
        super().datasync(f)
        self._durable_data[self._handles[f.fd][1]] = f.path.read_bytes()

    def truncate(self, f: OpenFile, size: int) -> None:
        self._op("truncate", f.path)
        super().truncate(f, size)

    def close(self, f: OpenFile) -> None:
        self._op("close", f.path)
        super().close(f)
        self._handles.pop(f.fd, None)

    def rename(self, src: Path, dst: Path) -> None:
        self._op("rename", src)
        super().rename(src, dst)
        self._ids[dst] = self._ids.pop(src)

    def unlink(self, path: Path) -> None:
        self._op("unlink", path)
        super().unlink(path)
        self._ids.pop(path, None)

    def fsync_dir(self, path: Path) -> None:
        self._op("fsync_dir", path)
        super().fsync_dir(path)
        if path in self._durable_names:
            self._durable_names[path] = {
                p.name: file_id for p, file_id in self._ids.items() if p.parent == path
            }

    # -- power loss -----------------------------------------------------------------------------

    def crash(self, *, keep_unsynced: bool = False) -> None:
        """Lose everything not made durable, as a power cut would, and close all handles.

        With ``keep_unsynced`` the data written but not fsynced reaches the disk anyway (as it
        often does), while unsynced directory changes are still lost.
        """
        for f, _ in list(self._handles.values()):
            os.close(f.fd)
        self._handles.clear()
        current = {file_id: path.read_bytes() for path, file_id in self._ids.items()}
        for directory, names in self._durable_names.items():
            for entry in os.listdir(directory):
                if (directory / entry).is_file():
                    (directory / entry).unlink()
            for name, file_id in names.items():
                data = self._durable_data.get(file_id, b"")
                if keep_unsynced and file_id in current:
                    data = current[file_id]
                (directory / name).write_bytes(data)
        self.crash_before = None
        self._load_model()
