"""testinfra fixtures for the default scenario; the helpers live in molecule/shared/lab_probe.py
(on PYTHONPATH through the shared Molecule base config, .config/molecule/config.yml)."""

from __future__ import annotations

import lab_probe
import pytest


@pytest.fixture(scope="session")
def lab() -> lab_probe.Lab:
    return lab_probe.load_lab()
