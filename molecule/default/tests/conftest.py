"""testinfra fixtures for the default scenario; the helpers live in ../lab_probe.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lab_probe


@pytest.fixture(scope="session")
def lab() -> lab_probe.Lab:
    return lab_probe.load_lab()
