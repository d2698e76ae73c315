"""``requests._text_problem`` (every key and value of every write passes it) answers exactly as
a character-by-character scan does: the first lone surrogate or (for keys) control character is
named, with its position; anything else is accepted."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from raftnode.http.requests import _text_problem


def scan(text: str, *, controls: bool) -> str | None:
    """The reference: look at every character in turn."""
    for i, ch in enumerate(text):
        code = ord(ch)
        if 0xD800 <= code <= 0xDFFF:
            return f"is not valid Unicode text (invalid UTF-8 or a lone surrogate at {i})"
        if controls and (code < 0x20 or 0x7F <= code <= 0x9F):
            return f"contains the control character U+{code:04X} at position {i}"
    return None


# Mostly printable ASCII, with the edges of every class mixed in.
_CHARS = st.one_of(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    st.sampled_from(["\x00", "\x1f", "\x7f", "\x80", "\x9f", "\xa0", "\ud800", "\udfff", "é"]),
    st.characters(codec=None),
)


@given(st.text(_CHARS, max_size=40), st.booleans())
def test_answers_as_a_scan_of_every_character(text: str, controls: bool) -> None:
    assert _text_problem(text, controls=controls) == scan(text, controls=controls)


def test_names_the_first_problem_of_either_kind() -> None:
    assert _text_problem("ab\x01c\ud800", controls=True) == scan("ab\x01c\ud800", controls=True)
    assert "U+0001 at position 2" in (_text_problem("ab\x01c\ud800", controls=True) or "")
    assert "surrogate at 1" in (_text_problem("a\udc00\x01", controls=True) or "")
    assert _text_problem("a\udc00\x01", controls=False) is not None
    assert _text_problem("tab\there", controls=False) is None
    assert _text_problem("tab\there", controls=True) is not None
    assert _text_problem("café ☕", controls=True) is None
    assert _text_problem("", controls=True) is None
