"""``--combine``: how many rounds run two faults at once, off unless asked."""

from __future__ import annotations

import pytest

from chaos.run import _parser


def test_combined_rounds_are_off_by_default_and_taken_as_a_share() -> None:
    assert _parser().parse_args([]).combine == 0.0
    assert _parser().parse_args(["--combine", "0.3"]).combine == 0.3


@pytest.mark.parametrize("bad", ["-0.1", "1.5", "some"])
def test_a_share_outside_0_to_1_is_refused(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["--combine", bad])
    assert "--combine" in capsys.readouterr().err
