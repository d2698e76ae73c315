"""Failpoints come only from the environment, by known names."""

from __future__ import annotations

import pytest

from raftnode.failpoints import (
    ENVIRONMENT_VARIABLE,
    KNOWN,
    READS_SKIP_READ_INDEX,
    UnknownFailpoint,
    from_environment,
    parse,
)


def test_none_unless_the_variable_names_them() -> None:
    assert from_environment({}) == frozenset()
    assert from_environment({ENVIRONMENT_VARIABLE: " , "}) == frozenset()


def test_names_are_comma_separated_and_trimmed() -> None:
    assert parse(f" {READS_SKIP_READ_INDEX} ,") == {READS_SKIP_READ_INDEX}


def test_an_unknown_name_is_refused_naming_it_and_the_known_ones() -> None:
    with pytest.raises(UnknownFailpoint, match=r"unknown failpoints \['ack-early'\]; known: "):
        parse(f"{READS_SKIP_READ_INDEX},ack-early")


def test_every_failpoint_says_what_it_breaks() -> None:
    assert all(len(text) > 20 for text in KNOWN.values())
