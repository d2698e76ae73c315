"""Deliberate faults that break a guarantee on purpose, so that the chaos checkers can be shown
to catch a broken node (etcd's gofail in spirit). Off unless the environment variable
``RAFTNODE_FAILPOINTS`` names them (comma-separated) when the process starts; the
configuration file cannot turn them on. An unknown name stops the start with an error, and a
node with any failpoint on says so in its log at start and in ``/status``. Never set it on a
cluster whose data matters."""

from __future__ import annotations

import os
from collections.abc import Mapping

ENVIRONMENT_VARIABLE = "RAFTNODE_FAILPOINTS"

READS_SKIP_READ_INDEX = "reads-skip-read-index"

KNOWN: Mapping[str, str] = {
    READS_SKIP_READ_INDEX: (
        "linearizable and lease reads are answered from this node's applied state at once, "
        "without a ReadIndex round or a lease (a stale read passed off as linearizable)"
    ),
}
"""Every failpoint, with what it breaks."""


class UnknownFailpoint(ValueError):
    """``RAFTNODE_FAILPOINTS`` names a failpoint that does not exist."""


def parse(text: str) -> frozenset[str]:
    """The failpoints a ``RAFTNODE_FAILPOINTS`` value names; raises ``UnknownFailpoint``."""
    names = frozenset(name.strip() for name in text.split(",") if name.strip())
    unknown = sorted(names - KNOWN.keys())
    if unknown:
        raise UnknownFailpoint(
            f"{ENVIRONMENT_VARIABLE} names unknown failpoints {unknown}; known: {sorted(KNOWN)}"
        )
    return names


def from_environment(environ: Mapping[str, str] = os.environ) -> frozenset[str]:
    """The failpoints this process was started with (none when the variable is unset)."""
    return parse(environ.get(ENVIRONMENT_VARIABLE, ""))
