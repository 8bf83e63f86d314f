"""The pieces of the edit grammar that work on text: quoting, the Perl regex dialect, the
word diff. Messages and diffs marked "observed" came from the original: its vm-exec, or its
diff code (InteractiveEdit.pm's rewrites over Text::WordDiff 0.09 and Algorithm::Diff 1.201)
run on the same pairs."""

from __future__ import annotations

import time

import pytest

from pbotvm.host.request.edit import worddiff
from pbotvm.host.request.edit.perl_regex import (
    PerlRegexError,
    RegexTimeout,
    TooLong,
    compile_perl,
    substitute,
)
from pbotvm.host.request.edit.quoting import extract_delimited
from pbotvm.host.request.edit.worddiff import describe, split_words


@pytest.mark.parametrize(("text", "delim", "found"), [
    ("'a b' rest", "'", ("a b", " rest")),
    ("  'a' and 'b'", "'", ("a", " and 'b'")),
    ("'it\\'s' x", "'", ("it\\'s", " x")),  # the backslash stays, as Text::Balanced's
    ("'a\\\\' x", "'", ("a\\\\", " x")),
    ("'open", "'", None),
    ("x 'a'", "'", None),
    ("/a\\/b/c/", "/", ("a\\/b", "c/")),
    ("/a", "/", None),
])
def test_extract_delimited(text: str, delim: str, found: tuple[str, str] | None) -> None:
    assert extract_delimited(text, delim) == found


# (pattern, replacement, text, count (0: all), ignore case, result)
SUBSTITUTIONS = [
    (r"(hello) (world)", "$2 $1", "echo hello world", 1, False, "echo world hello"),  # observed
    (r"(hello) (world)", r"\2 \1", "echo hello world", 1, False, "echo world hello"),
    (r"(\w)(\w)", "$2$1", "echo ab cd", 0, False, "ceoh ba dc"),  # each match's groups
    ("b", "[$`|$']", "echo abc", 1, False, "echo a[echo a|c]c"),  # observed
    (r"\Q.\E", "-", "echo a.b", 1, False, "echo a.b"),  # observed: \Q is a plain Q here
    (r"\z", "!", "echo a.b", 1, False, "echo a.b!"),  # observed
    (r"\Z", "!", "a\n", 1, False, "a!\n"),
    (r"(?<x>a)", "[$1]", "echo a.b", 1, False, "echo [a].b"),  # observed
    (r"(?'x'a)\k<x>", "X", "aab", 1, False, "Xb"),
    (r"(a)\g{-1}", "X", "aab", 1, False, "Xb"),
    (r"(a)\g1", "X", "aab", 1, False, "Xb"),
    (r"\x{62}", "B", "echo a.b", 1, False, "echo a.B"),  # observed
    (r"\x41\101\o{102}", "-", "xAABy", 1, False, "x-y"),
    (r"\x{zz}", "N", "a\0b", 1, False, "aNb"),  # leading hex digits; none: 0
    (r"[[:alpha:]]+$", "X", "echo a-b fooNbar", 1, False, "echo a-b X"),  # observed
    (r"[[:^digit:]]+", "", "ab12", 1, False, "12"),
    (r"\d+", "N", "foo123bar", 1, False, "fooNbar"),  # observed
    (r"\h+", "_", "a \t b\nc", 0, False, "a_b\nc"),
    (r"\v", "|", "a\nb\rc", 0, False, "a|b|c"),
    (r"\R", "|", "a\r\nb", 0, False, "a|b"),
    (r"\N+", "x", "ab\ncd", 1, False, "x\ncd"),
    (r"\e\cA", "E", "a\x1b\x01b", 1, False, "aEb"),
    (r"\y", "Y", "xyz", 1, False, "xYz"),  # Perl passes an unknown escape through
    (r"[]a]", "-", "x]a", 0, False, "x--"),
    (r"a++b|a", "-", "aab", 1, False, "-"),  # possessive quantifiers
    (r"\p{Lu}", "-", "aBc", 1, False, "a-c"),
    ("HELLO", "bye", "echo Hello", 1, True, "echo bye"),  # observed
    ("a", "b", "aaa", 0, False, "bbb"),  # observed
    ("x*", "-", "abc", 0, False, "-a-b-c-"),
    (r"(a)|b", "[$1]", "b", 1, False, "[]"),  # unset groups are empty
    ("a", "$3", "a", 1, False, ""),  # so are groups that do not exist
    ("a", r"\/\n", "a", 1, False, r"\/\n"),  # everything else is literal, as in the original
]


@pytest.mark.parametrize(("pattern", "replacement", "text", "count", "fold", "result"),
                         SUBSTITUTIONS)
def test_substitute(pattern: str, replacement: str, text: str, count: int, fold: bool,
                    result: str) -> None:
    compiled = compile_perl(pattern, ignore_case=fold)
    assert substitute(compiled, replacement, text, count=count, timeout=1,
                      max_length=1000)[0] == result


# Observed from the original: Perl's own messages (without "at FILE line N.").
ERRORS = [
    ("(", "Unmatched ( in regex; marked by <-- HERE in m/( <-- HERE /"),
    (")", "Unmatched ) in regex; marked by <-- HERE in m/) <-- HERE /"),
    ("[a", "Unmatched [ in regex; marked by <-- HERE in m/[ <-- HERE a/"),
    ("*", "Quantifier follows nothing in regex; marked by <-- HERE in m/* <-- HERE /"),
    ("a|*", "Quantifier follows nothing in regex; marked by <-- HERE in m/a|* <-- HERE /"),
    ("a**", "Nested quantifiers in regex; marked by <-- HERE in m/a** <-- HERE /"),
    ("a{2}{3}", "Nested quantifiers in regex; marked by <-- HERE in m/a{2}{ <-- HERE 3}/"),
    ("(a(b", "Unmatched ( in regex; marked by <-- HERE in m/(a( <-- HERE b/"),
    ("((a)", "Unmatched ( in regex; marked by <-- HERE in m/( <-- HERE (a)/"),
    ("[z-a]", 'Invalid [] range "z-a" in regex; marked by <-- HERE in m/[z-a <-- HERE ]/'),
    (r"\1", "Reference to nonexistent group in regex; marked by <-- HERE in m/\\1 <-- HERE /"),
    (r"(a)\2",
     "Reference to nonexistent group in regex; marked by <-- HERE in m/(a)\\2 <-- HERE /"),
    ("(?z)", "Sequence (?z...) not recognized in regex; marked by <-- HERE in m/(?z <-- HERE )/"),
    ("[[:foo:]]",
     "POSIX class [:foo:] unknown in regex; marked by <-- HERE in m/[[:foo:] <-- HERE ]/"),
    (r"\p{Foo}", 'Can\'t find Unicode property definition "Foo" in regex; '
     'marked by <-- HERE in m/\\p{Foo} <-- HERE /'),
    ("(?<n", "Sequence (?<... not terminated in regex; marked by <-- HERE in m/(?<n <-- HERE /"),
]


@pytest.mark.parametrize(("pattern", "message"), ERRORS)
def test_pattern_errors_in_perls_words(pattern: str, message: str) -> None:
    with pytest.raises(PerlRegexError) as error:
        compile_perl(pattern)
    assert str(error.value) == message


def test_other_errors_are_one_line_too() -> None:
    for pattern in [r"\k<x>", r"(?<x>a)\g{y}", r"\g{-3}", "a{3,1}", "(?P<1>x)", "[[:^foo:]]",
                    r"\x{110000}"]:
        with pytest.raises(PerlRegexError) as error:
            compile_perl(pattern)
        assert " in regex; marked by <-- HERE in m/" in str(error.value)
        assert "\n" not in str(error.value)


def test_a_substitution_stops_at_its_length_bound() -> None:
    with pytest.raises(TooLong):
        substitute(compile_perl("a"), "$`", "a" * 100, count=0, timeout=1, max_length=1000)
    assert substitute(compile_perl("a"), "$`", "a" * 40, count=0, timeout=1,
                      max_length=1000)[0] == "".join("a" * k for k in range(40))


def test_a_diff_that_would_look_at_too_many_word_pairs_says_so_at_once() -> None:
    same = "a " * 2000
    start = time.monotonic()
    assert worddiff.describe("x " + same + "p", "y " + same + "q") == worddiff.TOO_LARGE
    assert time.monotonic() - start < 1
    small = "a " * 300  # 90 000 pairs
    assert worddiff.describe("x " + small + "p", "y " + small + "q").startswith(
        "`replaced x with y`")


def test_a_catastrophic_pattern_times_out() -> None:
    with pytest.raises(RegexTimeout):
        substitute(compile_perl("(a|aa)+c"), "x", "a" * 80, count=1, timeout=0.1,
                   max_length=1000)


def test_split_words() -> None:
    assert split_words("echo foo(1, 2);") == ["echo ", "foo", "(", "1", ", ", "2", ");"]
    assert split_words("a\tb c\n") == ["a", "\t", "b ", "c", "\n"]  # tab: a control
    assert split_words("") == []


DIFFS = [  # observed
    ("echo hello world", "echo goodbye world", "echo `replaced hello with goodbye` world"),
    ("echo a B c", "echo a B c d", "echo a B `replaced c with c d`"),
    ("echo a B c d", "echo B c d", "echo `removed a` B c d"),
    ("echo q", "echo q", "No difference."),
    ("echo foo(1, 2);", "echo foo(1, 3, 4);", "echo foo(1, `replaced 2 with 3, 4`);"),
    ("echo a b c", "echo a c b", "echo a `replaced b c with c b`"),
    ("foo(1, 2);", "foo(2, 1);", "foo(`removed 1,` 2`inserted , 1`);"),
    ("a  b\tc", "a b c", "`replaced a  b with a b` c"),
    ("x = 1;\ny = 2;", "x = 1;\nz = 2;", "x = 1;\n`replaced y = with z =` 2;"),
    ("int main(){return 0;}", "int main(void){return 1;}",
     "int main`replaced (){ with (void){`return `replaced 0 with 1`;}"),
    ("echo é à", "echo à é", "echo `replaced é à with à é`"),
    ("a,b,c", "a;b;c", "a`replaced , with ;`b`replaced , with ;`c"),
    ("echo <del>x</del>", "echo <ins>y</ins>",
     "echo <`replaced del>x< with ins>y<`/`replaced del> with ins>`"),
    ("", "echo a", "`inserted echo a`"),
    ("echo a", "", "`removed echo a`"),
    ("a b a b a", "b a b a b", "`removed a` b a b `replaced a with a b`"),
    ("print 'x'", 'print "x"', "print `replaced ' with \"`x`replaced ' with \"`"),
    ("echo 1 2 3 4 5", "echo 1 3 5 7", "echo 1 `removed 2` 3 `replaced 4 5 with 5 7`"),
]


@pytest.mark.parametrize(("old", "new", "answer"), DIFFS)
def test_diff(old: str, new: str, answer: str) -> None:
    assert describe(old, new) == answer
