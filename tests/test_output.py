import random
import re
import time

import pytest

from pbotvm.host.request.output import BEEPS, apply_backspaces, postprocess


@pytest.mark.parametrize(("text", "expected"), [
    ("hello\n\n", "hello\n"),  # one trailing newline goes (the guest's), not more
    ("hello\n", "hello"),
    ("hello", "hello"),
    ("", ""),
    ("\n", ""),
])
def test_one_trailing_newline_is_removed(text: str, expected: str) -> None:
    assert postprocess(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("ab\bc", "ac"),
    ("abc\b\bX", "aXc"),  # overwrites, nothing is cut
    ("\bX", "X"),
    ("a\b\b\bX", "X"),  # the cursor stops at the start
    ("ab\n\bX", "abX"),  # newlines are characters like any other
    ("abc\b", "abc"),
    ("ö😀\bé", "öé"),
])
def test_backspace_moves_a_cursor(text: str, expected: str) -> None:
    assert apply_backspaces(text) == expected
    assert postprocess(text) == expected


def test_each_bell_is_a_random_word() -> None:
    out = postprocess("a\a b\a\a\n", random.Random(42))
    match = re.fullmatch(r"a(\*\w+\*) b(\*\w+\*)(\*\w+\*)", out)
    assert match is not None and all(word in BEEPS for word in match.groups())
    assert out == postprocess("a\a b\a\a\n", random.Random(42))  # the rng decides
    assert len({postprocess("\a", random.Random(seed)) for seed in range(50)}) > 3


def test_named_control_characters() -> None:
    assert postprocess("\x1b[31mred\x0c") == "<esc>[31mred<ff>"


@pytest.mark.parametrize(("char", "shown"), [
    ("\x00", "\\x00"), ("\x01", "\\x01"), ("\x0b", "\\x0B"),
    ("\x10", "\\x10"), ("\x1c", "\\x1C"), ("\x1a", "\\x1A"), ("\x7f", "\x7f"), ("\x80", "\x80"),
])
def test_other_control_characters_are_escaped_in_upper_case(char: str, shown: str) -> None:
    assert postprocess(f"<{char}>") == f"<{shown}>"


@pytest.mark.parametrize("char", ["\n", "\r", "\t", "\x02", "\x03", "\x0f", "\x11", "\x1d",
                                  "\x1e", "\x1f"])
def test_whitespace_and_irc_formatting_are_kept(char: str) -> None:
    assert postprocess(f"a{char}b") == f"a{char}b"


def test_utf8_is_untouched() -> None:
    assert postprocess("héllo wörld 😀 \u2028\n") == "héllo wörld 😀 \u2028"


def test_one_megabyte_is_fast() -> None:
    text = "x" * (1 << 20)
    start = time.perf_counter()
    assert postprocess(text + "\n") == text
    assert postprocess("ab\b" * 300_000) == "a" * 300_000 + "b"
    assert postprocess("\x01" * 300_000) == "\\x01" * 300_000
    assert time.perf_counter() - start < 1.0
