import time

import pytest

from pbotvm.tokenizer import split_line, token_spans

MB = 1 << 20

# The 2023 SplitLine.pm: every row of its examples table (observed with the original Perl).
SECTION_7 = [
    ('printf("%d\\n", 1+1);', {}, ['printf("%d\\n"', ",", "1+1);"]),
    ('puts("a")', {}, ['puts("a"', ")"]),
    ('echo "hello world"', {}, ["echo", '"hello world"']),
    ('echo "a"b c', {}, ["echo", '"a"b', "c"]),
    ('echo a"b c"d', {}, ["echo", 'a"b', 'c"d']),
    ('x = "unterminated and more', {}, ["x", "=", '"unterminated', "and", "more"]),
    ("a\\ b  c", {}, ["a\\ b", "c"]),
    ("a\\ b  c", {"strip_quotes": True, "preserve_escapes": False}, ["a b", "c"]),
    ('f(x, "y z")', {}, ["f(x,", '"y z"', ")"]),
    ('echo "a\\"b" c', {}, ["echo", '"a\\"b"', "c"]),
    ('echo "a\\"b" c', {"strip_quotes": True, "preserve_escapes": False}, ["echo", 'a"b', "c"]),
    ('say "a b"  "c  d"', {"keep_spaces": True}, ["say", '"a b"', ' "c  d"']),
]


@pytest.mark.parametrize(("line", "opts", "tokens"), SECTION_7)
def test_2023_split_line_matches_the_spec_table(line: str, opts: dict[str, bool],
                                                tokens: list[str]) -> None:
    assert split_line(line, **opts) == tokens


@pytest.mark.parametrize(("line", "words"), [
    ("", []),
    (" \t\n ", []),
    ('  echo "a b"  c\n', ["echo", '"a b"', "c"]),
    ('echo "a".txt', ["echo", '"a".txt']),
    ("a\\ b c", ["a\\ b", "c"]),
    ("don't stop", ["don't", "stop"]),
    ("-args='x y' z", ["-args='x y'", "z"]),
    ("a \\", ["a", "\\"]),  # unlike HEAD, a trailing backslash is a word of its own
    ("ö 😀", ["ö", "😀"]),
])
def test_token_spans_cut_the_text_as_written(line: str, words: list[str]) -> None:
    assert [line[start:end] for start, end in token_spans(line)] == words


def _fast(function: object, text: str, limit: float) -> None:
    start = time.perf_counter()
    function(text)  # type: ignore[operator]
    assert time.perf_counter() - start < limit


@pytest.mark.parametrize("function", [split_line, token_spans])
def test_one_megabyte_token_is_fast(function: object) -> None:
    _fast(function, "x" * MB, 0.3)
    _fast(function, '"' + "y" * MB, 0.3)  # one unbalanced quote: no rescan


@pytest.mark.parametrize("function", [split_line, token_spans])
@pytest.mark.parametrize("text", [
    '"a"b ' * 50_000,  # 2023: every quote opens and none closes (the Perl rescanned each)
    "\"'" * 125_000,  # HEAD: alternating unbalanced quotes
    '"' * 100_000 + "\\" * 50_001,  # unbalanced quotes with a pending escape at the end
    "\\" * 250_000,
])
def test_hostile_input_is_linear(function: object, text: str) -> None:
    _fast(function, text, 1.0)  # quadratic scanning would take minutes here
