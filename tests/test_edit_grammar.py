"""The edit grammar on plain history values (no store, no process).

Replies marked "observed" were seen from the original (620ebe0e); the others follow from the
original's code or from a fix listed in pbotvm.host.request.edit.grammar.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

import pytest

from pbotvm.host.request.edit import grammar
from pbotvm.host.request.edit.grammar import Edit, HistoryChange, interactive_edit

Histories = dict[str, list[str]]


def edit(code: str, histories: Histories | None = None, channel: str = "#c") -> Edit:
    known = histories or {}

    def history(name: str) -> Sequence[str]:
        return known.get(name, [])

    return interactive_edit(code, channel, history)


def apply(histories: Histories, change: HistoryChange | None) -> None:
    if change is not None:
        stored = histories.setdefault(change.channel, [])
        histories[change.channel] = list(change.push) + stored[change.drop:]


# (history of #c, request, reply or None, code, only_show, run)
CASES = [
    ([], "show", "No recent code to show.", None, False, None),  # observed
    (["echo b", "echo a"], "show", "echo b", None, False, None),  # observed
    (["echo b", "echo a"], "and show", "echo b", None, False, None),  # observed
    (["echo b", "echo a"], "-paste show", "echo b", None, False, None),  # options skipped
    (["echo b", "echo a"], "undo", None, "echo a", True, None),  # observed
    (["echo b", "echo a"], "undo and run", None, "echo a", False, "run"),  # fix 7
    (["echo b", "echo a"], "undone", None, "undone", False, None),  # fix 6
    (["echo b", "echo a"], "undo2", None, "undo2", False, None),  # fix 6
    (["echo a"], "undo", "No more undos remaining.", None, False, None),  # fix 8
    (["echo a"], "run with anything after it", None, "echo a", False, "run"),  # observed
    (["echo a"], "PASTE", None, "echo a", False, "paste"),
    (["0"], "run", "No recent code to run.", None, False, None),  # Perl's truth, as observed
    (["echo a"], "diff", "Not enough recent code to diff.", None, False, None),  # fix 8
    (["echo a b", "echo a c"], "diff", "echo a `replaced c with b`", None, False, None),
    (["echo a"], "s/a/b/ and run", None, "echo b", False, "run"),
    (["echo a"], "s/a/b/ and diff", "echo `replaced a with b`", None, False, None),
    (["echo a\n"], "append 'x'", None, "echo a x\n", False, None),  # Perl's s/$/ x/
    (["echo a"], "prepend 'echo 0;' and 'echo 1;'", None, "echo 1; echo 0; echo a", False,
     None),  # observed
    (["echo a b c"], "remove 'a ' and 'b '", None, "echo b c", False, None),  # observed
    (["a b"], "replace 'b' with 'a' and replace 'a' with 'x'", None, "x a", False, None),
    (["echo a a"], "replace first 'a' with '1' and replace first 'a' with '2'", None,
     "echo 1 a", False, None),  # the first of equal numbers wins
    (["echo a b a"], "replace last 'a' with 'Z' and replace all 'b' with 'B'", None,
     "echo a B Z", False, None),
    (["echo a\necho a"], "replace last 'a' with 'Z'", None, "echo a\necho Z", False,
     None),  # fix 3: the last of the whole code
    (["echo é_a"], "replace 'a' with 'Z'", "No replacements made.", None, False, None),
    (["echo éa"], "replace 'a' with 'Z'", None, "echo éZ", False, None),  # ASCII words
    (["echo a.b"], "s/a/$'/", None, "echo .b.b", False, None),
    (["echo abc"], "s/b/<$&>/", None, "echo a<b>c", False, None),
    (["echo x"], "s/(a)?x/[$1$2]/", None, "echo []", False, None),  # unset groups are empty
    (["echo a/b"], "s/\\//+/", None, "echo a+b", False, None),  # observed
    (["echo aaa"], "s/a/b/gg", grammar.NO_SUBSTITUTIONS, None, False, None),  # observed
    (["echo a"], "s/a/a/", None, "echo a", False, None),  # a match counts as a change
    (["echo a"], "replace 'a' with 'a'", None, "echo a", False, None),  # observed
]


@pytest.mark.parametrize(("history", "code", "reply", "result", "only_show", "run"), CASES)
def test_edit(history: list[str], code: str, reply: str | None, result: str | None,
              only_show: bool, run: str | None) -> None:
    got = edit(code, {"#c": history})
    assert got.reply == reply
    if reply is None:
        assert (got.code, got.only_show, got.run) == (result, only_show, run)


def test_history_changes() -> None:
    histories: Histories = {"#c": ["echo b", "echo a"], "#x": ["echo x"]}
    steps = [
        ("echo c", HistoryChange("#c", 0, ("echo c",))),
        ("undo", HistoryChange("#c", 1, ())),  # the undo is kept
        ("undo and run", HistoryChange("#c", 1, ())),  # fix 7: kept with run too
        ("run", None),
        ("diff", None),
        ("show", None),
        ("copy #x", HistoryChange("#c", 0, ("echo x",))),  # shown, and put on top
        ("copy #x and run", None),
        ("copy #x and s/x/y/", HistoryChange("#c", 0, ("echo y", "echo x"))),
        ("copy #x and undo", HistoryChange("#c", 0, ())),
        ("s/nomatch/z/", None),
        ("show #x", None),
        ("diff #x", None),
    ]
    for code, change in steps:
        got = edit(code, histories)
        assert got.change == change, code
        apply(histories, got.change)
    assert histories["#c"] == ["echo y", "echo x", "echo x", "echo a"]


def test_another_channels_history_is_read_not_written() -> None:
    histories: Histories = {"#c": ["echo mine"], "#x": ["echo new", "echo old"], "nick": ["p"]}
    assert edit("show #x", histories).reply == "echo new"
    assert edit("diff #x", histories).reply == "echo `replaced old with new`"
    assert edit("copy nick", histories).code == "p"  # a private message's history
    assert edit("copy #none", histories).reply == "No history for #none."  # observed


def test_a_name_is_only_a_key() -> None:
    asked: list[str] = []

    def history(name: str) -> Sequence[str]:
        asked.append(name)
        return []

    interactive_edit("copy ../../etc/passwd", "#c", history)
    interactive_edit("show /tmp/x", "#c", history)
    assert asked == ["../../etc/passwd", "/tmp/x"]


def test_regex_time_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grammar, "REGEX_BUDGET", 0.2)
    start = time.monotonic()
    got = edit("s/(a|aa)+c/x/", {"#c": ["a" * 80]})
    assert got.reply == grammar.REGEX_TOO_SLOW
    assert time.monotonic() - start < 5


def test_the_budget_covers_the_whole_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grammar, "REGEX_BUDGET", 0.2)
    start = time.monotonic()
    got = edit(" and ".join(["s/(a|aa)+c/x/"] * 50), {"#c": ["a" * 80]})
    assert got.reply == grammar.REGEX_TOO_SLOW
    assert time.monotonic() - start < 5


# Issue 19: one 299-character line of these made 100 MB of code inside vm-server.
DOT_BOMB = " and ".join(["replace all '.' with '..........'"] * 8)
BOUNDED = [
    (["echo ."], DOT_BOMB),
    (["echo ."], DOT_BOMB.replace("replace all", "replace last")
     .replace("'..........'", "'" + "." * 20000 + "'")),
    (["echo ."], "s/e/$&$&/g and " * 20 + "s/x/y/"),  # each doubles the e's
    (["echo " + "." * 10000], "s/\\./$`/g"),  # 10 000 matches, each the text before it
    (["echo a"], " and ".join([f"append '{'x' * 400}'"] * 200)),
    (["echo a"], " and ".join([f"prepend '{'x' * 400}'"] * 200)),
    (["echo " + "a " * 2000], "replace first 'a' with '" + "z" * 70000 + "'"),
]


@pytest.mark.parametrize(("history", "code"), BOUNDED)
def test_no_edit_makes_the_code_longer_than_the_bound(history: list[str], code: str) -> None:
    start = time.monotonic()
    got = edit(code, {"#c": history})
    assert (got.reply, got.change) == (grammar.TOO_LONG, None)  # one line, nothing saved
    assert time.monotonic() - start < 1  # stopped as it grew, not after


def test_edits_up_to_the_bound_are_made() -> None:
    room = grammar.MAX_CODE - len("echo a") - 1
    got = edit(f"append '{'x' * room}'", {"#c": ["echo a"]})
    assert got.reply is None and len(got.code) == grammar.MAX_CODE
    got = edit("replace all 'a' with 'bbb'", {"#c": ["a " * (grammar.MAX_CODE // 4)]})
    assert got.reply is None and got.code == "bbb " * (grammar.MAX_CODE // 4)


# Malformed edits: the original's usage line (observed), and no change to the history.
MALFORMED = [
    ("s/a/b", grammar.USAGE_SUBSTITUTE),
    ("s/a\\/b/", grammar.USAGE_SUBSTITUTE),
    ("s/a/b/ and s/c/d", grammar.USAGE_SUBSTITUTE),
    ("remove 'x", grammar.USAGE_REMOVE),
    ("prepend 'x", grammar.USAGE_PREPEND),
    ("append 'x", grammar.USAGE_APPEND),
    ("replace 'x\\' with 'y\\'", grammar.USAGE_REPLACE),
    ("s/a/b/x", "Bad regex modifier 'x'.  Only 'i' and 'g' are allowed."),
    ("s/a/b/and", "Bad regex modifier 'and'.  Only 'i' and 'g' are allowed."),
    ("replace foo 'a' with 'b'", "Bad replacement modifier 'foo'; valid modifiers are 'all', "
     "'first', 'second', ..., 'tenth', 'last'"),
    ("remove eleventh 'a'", "Bad replacement modifier 'eleventh'; valid modifiers are 'all', "
     "'first', 'second', ..., 'tenth', 'last'"),
    ("s/(/x/", "Unmatched ( in regex; marked by <-- HERE in m/( <-- HERE /"),
    ("s/[a/x/", "Unmatched [ in regex; marked by <-- HERE in m/[ <-- HERE a/"),
    ("s/a**/x/", "Nested quantifiers in regex; marked by <-- HERE in m/a** <-- HERE /"),
    ("s/a/b/ and s/(/x/", "Unmatched ( in regex; marked by <-- HERE in m/( <-- HERE /"),
]


@pytest.mark.parametrize(("code", "reply"), MALFORMED)
def test_malformed_edit(code: str, reply: str) -> None:
    got = edit(code, {"#c": ["echo a b"]})
    assert (got.reply, got.change) == (reply, None)


FRAGMENTS = ["s/", "/", "'", "\\", "and ", "with ", "replace ", "remove ", "prepend ",
             "append ", "undo ", "run", "diff", "show ", "copy ", "#x ", "a", "b", "(", ")",
             "[", "]", "*", "+", "?", "{2}", "$1", "\\1", " ", "first ", "last ", "all ",
             "g", "i", "-paste ", "\n", "é"]


def test_random_edits_never_raise_and_keep_a_consistent_history() -> None:
    rng = random.Random(10)
    histories: Histories = {"#c": ["echo a b"], "#x": ["echo x"]}
    for _ in range(3000):
        code = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randrange(1, 12)))
        before = list(histories.get("#c", []))
        got = edit(code, histories)
        assert isinstance(got, Edit)
        if got.change is not None:
            assert got.change.channel == "#c"
            assert got.change.drop <= len(before)
            apply(histories, got.change)
            assert all(isinstance(entry, str) for entry in histories["#c"])
        else:
            assert histories.get("#c", []) == before
        if not histories.get("#c"):
            histories["#c"] = ["echo a b"]


def test_a_huge_chain() -> None:
    chain = " and ".join(["s/a/a/"] * 2000 + ["s/a/b/"])
    start = time.monotonic()
    got = edit(chain, {"#c": ["echo a"]})
    assert got.code == "echo b"
    replaces = " and ".join(f"replace 'w{n}' with 'v{n}'" for n in range(1000))
    got = edit(replaces, {"#c": [" ".join(f"w{n}" for n in range(1000))]})
    assert got.code == " ".join(f"v{n}" for n in range(1000))
    assert time.monotonic() - start < 30  # seconds: linear-ish, far from a hang
