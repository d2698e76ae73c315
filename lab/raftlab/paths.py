"""Where the lab keeps its cache and per-lab state, overridable for tests and CI."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """Image cache shared by every clone on this machine (RAFTLAB_CACHE_DIR overrides)."""
    return Path(os.environ.get("RAFTLAB_CACHE_DIR", "/var/cache/raftnode-lab"))


def state_root() -> Path:
    """Parent of the per-lab state dirs, found by any process (RAFTLAB_STATE_DIR overrides)."""
    return Path(os.environ.get("RAFTLAB_STATE_DIR", "/var/lib/raftnode-lab"))
