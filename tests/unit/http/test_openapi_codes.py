"""The documented error codes are exactly the ones the server answers with."""

from __future__ import annotations

from pathlib import Path

import yaml

from raftnode.http.errors import ErrorCode

SPEC = Path(__file__).resolve().parents[3] / "docs" / "openapi.yaml"


def test_the_error_enum_of_the_spec_is_the_servers() -> None:
    spec = yaml.safe_load(SPEC.read_text())
    documented = spec["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
    assert sorted(documented) == sorted(code.value for code in ErrorCode)
