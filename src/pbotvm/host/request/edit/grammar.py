"""The edit commands a user types instead of code, as pure functions over a history value.

``interactive_edit`` is the original's InteractiveEdit.pm, step by step: ``copy``,
``show``, ``undo``, then a loop over ``diff``, ``run``/``again``/``paste``, ``remove``, ``prepend``,
``append``, ``replace`` and ``s///`` joined by ``and``, then the queued replacements, then what
to save and what to answer. Every message is the original's. A history is a sequence of
entries, newest first; ``histories(name)`` gives the one of a channel or nick (same language).

Deliberate fixes of the original's plain bugs (its known edit bugs and a few more):

1. ``s///``: ``$1``..``$9`` (and ``\\1``..``\\9``, ``$&``) are the groups of each match, in the
   replacement only; the original replaced every literal ``$1`` in the whole code with the
   last match's group after the substitution (a shell's ``$1`` was erased).
2. ``replace``: the matches that are not the target keep their text (the original re-inserted
   them without their backslashes); a target that does not exist is no replacement.
3. ``replace``: a *from* that starts or ends with a non-word character has no boundary there
   (the original consumed the neighbouring character, so ``all '.'`` missed ``..``'s second
   dot); ``last`` is the last match of the whole code, not of its first line with one.
4. ``replace first .. and replace third ..`` of one text: each N counts the matches of the
   code before these replacements (the original used the previous N for every later one).
5. ``ninth`` is accepted (the original only knew ``nineth``, which stays accepted).
6. ``undo`` is a word: ``undone`` is code, not ``undo`` + ``ne``.
7. ``undo and run`` runs the undone code and keeps the undo (the original only showed it and
   forgot the undo).
8. The first save of a history writes no empty entry (the original's ``diff`` after one run
   answered `` `inserted ...` `` and ``undo`` reached an empty program).
9. A pattern that backtracks without end stops after a time budget with a message.
10. An edit may not make the code longer than ``MAX_CODE`` characters: ``replace``, ``s///``,
    ``prepend`` and ``append`` stop as soon as their result would pass it, and the request
    ends with ``TOO_LONG``, nothing saved (one 299-character line of nested ``replace all``
    once grew the code to 100 MB inside vm-server).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pbotvm.host.request.edit import perl_regex, worddiff
from pbotvm.host.request.edit.quoting import extract_delimited

MAX_HISTORY = 10000  # entries kept per channel and language, as the original's max_history
REGEX_BUDGET = 1.0  # seconds for all of a request's s/// together
# Characters an edit may make the code grow to: an IRC line is 512 bytes, so even a long
# chain of edits never needs more, and nothing sized by one chat line gets bigger than this.
MAX_CODE = 64 * 1024

Histories = Callable[[str], Sequence[str]]

_LEADING_OPTION = re.compile(r"\s*-[^ ]+\s*")
_COPY = re.compile(r"\s*copy\s+(\S+)\s*")
_OTHER_HISTORY = re.compile(r"\s*(?:and\s+)?(?:diff|show)\s+(\S+)\s*\Z")
_SHOW = re.compile(r"\s*(?:and\s+)?show(?:\s+\S+)?\s*\Z", re.IGNORECASE)
_UNDO = re.compile(r"\s*(?:and)?\s*undo\b")
_AND_QUOTE = re.compile(r"\s*and\s+'")
_DIFF = re.compile(r"\s*(?:and\s+)?diff\b", re.IGNORECASE)
_RUN = re.compile(r"\s*(?:and\s+)?(again|run|paste)\b", re.IGNORECASE)
_REMOVE = re.compile(r"\s*(?:and)?\s*remove \s*(?:[^']+)?\s*'")
_PREPEND = re.compile(r"\s*(?:and)?\s*prepend '")
_APPEND = re.compile(r"\s*(?:and)?\s*append '")
_REPLACE = re.compile(r"\s*(?:and)?\s*replace\s*(?:[^']+)?\s*'.*'\s*with\s*'.*?'", re.IGNORECASE)
_SUBSTITUTE = re.compile(r"\s*(?:and)?\s*s/.*/")
_LEADING_AND = re.compile(r"\s*(?:and)?\s*")
_REMOVE_WORD = re.compile(r"remove\s*([^']+)?\s*", re.IGNORECASE)
_REPLACE_WORD = re.compile(r"replace\s*([^']+)?\s*", re.IGNORECASE)
_WITH = re.compile(r"\s*with\s*", re.IGNORECASE)
_SUBSTITUTE_S = re.compile(r"\s*(?:and)?\s*s")
_REGEX_FLAGS = re.compile(r"[^ ]+")
_BAD_FLAG = re.compile(r"[^gi]")
_ASCII_WORD = re.compile(r"[A-Za-z0-9_]")
_PERL_QUOTEMETA = re.compile(r"[^A-Za-z0-9_ \x80-\U0010ffff]")
_WORD_BEFORE = r"(?<![A-Za-z0-9_])"
_WORD_AFTER = r"(?![A-Za-z0-9_])"
_EMPTY_AT_BOUNDARY = r"\b"

_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6,
             "seventh": 7, "eighth": 8, "ninth": 9, "nineth": 9, "tenth": 10}
_WHOLE = ("all", "last")

USAGE_REMOVE = ("Unbalanced single quotes.  Usage: cc remove [all, first, .., tenth, last] "
                "'text' [and ...]")
USAGE_PREPEND = "Unbalanced single quotes.  Usage: cc prepend 'text' [and ...]"
USAGE_APPEND = "Unbalanced single quotes.  Usage: cc append 'text' [and ...]"
USAGE_REPLACE = ("Unbalanced single quotes.  Usage: cc replace 'from' with 'to' "
                    "[and replace ... with ... [and ...]]")
USAGE_SUBSTITUTE = ("Unbalanced slashes.  Usage: cc s/regex/substitution/[gi] "
                    "[and s/.../.../ [and ...]]")
NO_SUBSTITUTIONS = "No substitutions made."
NO_REPLACEMENTS = "No replacements made."
REGEX_TOO_SLOW = "The regex took too long to run."
TOO_LONG = f"The edit would make the code longer than {MAX_CODE} characters; nothing changed."


@dataclass(frozen=True)
class HistoryChange:
    """What a request does to a channel's history: drop its ``drop`` newest entries, then put
    ``push`` on top (newest first). The store keeps at most ``MAX_HISTORY`` entries."""

    channel: str
    drop: int
    push: tuple[str, ...]


@dataclass(frozen=True)
class Edit:
    """The outcome of the edit step for one request."""

    code: str  # the code to carry on with
    reply: str | None = None  # an answer that ends the request (show, diff, a message)
    only_show: bool = False  # answer with the code (copy, undo) instead of running it
    run: str | None = None  # "run", "again" or "paste" when one was given
    change: HistoryChange | None = None  # None: the history stays as it was
    # The change was worked out from the history as it was read (an edit, an undo, a copy);
    # else it only puts the code as given on top, whatever the history holds by then.
    read: bool = False

    @property
    def paste(self) -> bool:
        return self.run == "paste"


class _Answer(Exception):
    """Not an error: the request ends here with this text."""

    def __init__(self, text: str) -> None:
        self.text = text


@dataclass
class _Stack:
    """A channel's history as the request sees it: what it put on top, then the stored
    entries less the ones it undid."""

    stored: Sequence[str]
    top: list[str] = field(default_factory=list)
    dropped: int = 0

    def at(self, index: int) -> str | None:
        if index < len(self.top):
            return self.top[index]
        try:
            return self.stored[self.dropped + index - len(self.top)]
        except IndexError:
            return None

    def pop(self) -> None:
        if self.top:
            del self.top[0]
        elif self.at(0) is not None:
            self.dropped += 1

    def change(self, channel: str) -> HistoryChange:
        return HistoryChange(channel, self.dropped, tuple(self.top))


@dataclass(frozen=True)
class _Replacement:
    """A queued ``replace [which] 'from' with 'to'``; ``which`` is 1-10, "all" or "last"."""

    text: str
    to: str
    which: int | str

    def sort_key(self) -> tuple[str, int]:
        # The original's order: by the text as Perl's quotemeta wrote it (spaces unescaped),
        # then by the number (all and last count 0).
        quoted = _PERL_QUOTEMETA.sub(r"\\\g<0>", self.text)
        return quoted, self.which if isinstance(self.which, int) else 0


def _perl_true(text: str | None) -> bool:
    return text not in (None, "", "0")


def _quoted(subcode: str, usage: str) -> tuple[str, str]:
    found = extract_delimited(subcode, "'")
    if found is None:
        raise _Answer(usage)
    return found


def interactive_edit(code: str, channel: str, histories: Histories) -> Edit:
    """The edit step on ``code`` (vm-exec options already removed) in ``channel``."""
    try:
        return _Editor(code, channel, histories).edit()
    except _Answer as answer:
        return Edit(code, reply=answer.text)


class _Editor:
    """One pass of the original's interactive_edit; ``_Answer`` ends it early."""

    def __init__(self, code: str, channel: str, histories: Histories) -> None:
        self.code = code
        self.channel = channel
        self.histories = histories
        self.subcode = code
        while match := _LEADING_OPTION.match(self.subcode):  # -options are not commands
            self.subcode = self.subcode[match.end():]
        self.changed = False
        self.prevchange: str | None = None
        self.deadline = time.monotonic() + REGEX_BUDGET

    def edit(self) -> Edit:
        copied = self._copy()
        if match := _OTHER_HISTORY.match(self.subcode):
            self.channel = match[1]
        stack = _Stack(self.histories(self.channel), [copied] if copied is not None else [])
        if _SHOW.match(self.subcode):
            newest = stack.at(0)
            raise _Answer("No recent code to show." if newest is None else newest)
        self.prevchange = stack.at(0)
        undone = self._undo(stack)
        run, diff, replacements = self._commands()
        if replacements:
            self._replace_all(replacements)

        taken = copied is not None or undone  # the code is an entry of a history as it is
        only_show = taken and not self.changed and run is None
        # run and diff alone change nothing, except that an undo with run is kept (fix 7).
        saved = self.changed or not (run or diff) or (undone and run is not None and not diff)
        change = None
        if saved:
            if self.changed or not taken:
                stack.top.insert(0, self.code)
            change = stack.change(self.channel)
        read = taken or self.changed or run is not None or diff
        if diff:
            old, new = stack.at(1), stack.at(0)
            if old is None or new is None:
                return Edit(self.code, reply="Not enough recent code to diff.", change=change,
                            read=read)
            return Edit(self.code, reply=worddiff.describe(old, new), change=change, read=read)
        return Edit(self.code, only_show=only_show, run=run, change=change, read=read)

    def _copy(self) -> str | None:
        match = _COPY.match(self.subcode)
        if match is None:
            return None
        history = self.histories(match[1])
        try:
            copied = history[0]
        except IndexError:
            raise _Answer(f"No history for {match[1]}.") from None
        self.subcode = self.subcode[match.end():]
        self.code = copied
        return copied

    def _undo(self, stack: _Stack) -> bool:
        undone = False
        while match := _UNDO.match(self.subcode):
            self.subcode = self.subcode[match.end():]
            stack.pop()
            top = stack.at(0)
            if top is None:
                raise _Answer("No more undos remaining.")
            self.code = self.prevchange = top
            undone = True
        return undone

    def _commands(self) -> tuple[str | None, bool, list[_Replacement]]:
        """The loop over the chained commands: (run word, diff given, queued replacements)."""
        run: str | None = None
        replacements: list[_Replacement] = []
        last_keyword: str | None = None
        while True:
            if last_keyword and (match := _AND_QUOTE.match(self.subcode)):
                self.subcode = f"and {last_keyword} '" + self.subcode[match.end():]
            if _DIFF.match(self.subcode):
                return run, True, replacements
            if match := _RUN.match(self.subcode):
                # Not consumed: whatever follows run is ignored.
                run = match[1].lower()
                if not _perl_true(self.prevchange):
                    raise _Answer(f"No recent code to {run}.")
                assert self.prevchange is not None
                self.code = self.prevchange
            if _REMOVE.match(self.subcode):
                last_keyword = "remove"
                self._remove_to_replace()
                continue
            if match := _PREPEND.match(self.subcode):
                last_keyword = "prepend"
                self._add(self.subcode[match.end() - 1:], USAGE_PREPEND, "prepend to",
                          lambda code, text: f"{text} {code}")
                continue
            if match := _APPEND.match(self.subcode):
                last_keyword = "append"
                self._add(self.subcode[match.end() - 1:], USAGE_APPEND, "append to", _append)
                continue
            if _REPLACE.match(self.subcode):
                last_keyword = "replace"
                replacements.append(self._queue_replacement())
                continue
            if _SUBSTITUTE.match(self.subcode):
                last_keyword = None
                self._substitute()
                if not self.changed:
                    raise _Answer(NO_SUBSTITUTIONS)
                continue
            return run, False, replacements

    def _remove_to_replace(self) -> None:
        """``remove [which] 'text'`` is ``replace [which] 'text' with ''``."""
        self.subcode = self.subcode[_LEADING_AND.match(self.subcode).end():]  # type: ignore[union-attr]
        word = _REMOVE_WORD.match(self.subcode)
        assert word is not None  # _REMOVE matched
        which = (word[1] or "first").rstrip()
        text, rest = _quoted(self.subcode[word.end():], USAGE_REMOVE)
        self.subcode = f"replace {which} '{text}' with ''{rest}"

    def _add(self, subcode: str, usage: str, verb: str, join: Callable[[str, str], str]) -> None:
        """prepend or append: ``subcode`` starts at the quote."""
        text, self.subcode = _quoted(subcode, usage)
        self.changed = True
        if self.prevchange is None:
            raise _Answer(f"No recent code to {verb}.")
        if len(self.prevchange) + len(text) + 1 > MAX_CODE:  # checked before it is built
            raise _Answer(TOO_LONG)
        self.code = self.prevchange = join(self.prevchange, text)

    def _queue_replacement(self) -> _Replacement:
        self.subcode = self.subcode[_LEADING_AND.match(self.subcode).end():]  # type: ignore[union-attr]
        word = _REPLACE_WORD.match(self.subcode)
        assert word is not None  # _REPLACE matched
        which = (word[1] or "first").rstrip()
        # The original had a shorter usage line for a broken *from*; it cannot happen once
        # _REPLACE matched (the quote before "with" closes it), so one line serves both.
        text, rest = _quoted(self.subcode[word.end():], USAGE_REPLACE)
        rest = _WITH.sub("", rest, count=1)
        to, self.subcode = _quoted(rest, USAGE_REPLACE)
        if which not in _WHOLE and which not in _ORDINALS:
            raise _Answer(f"Bad replacement modifier '{which}'; valid modifiers are 'all', "
                          "'first', 'second', ..., 'tenth', 'last'")
        return _Replacement(text, to, _ORDINALS.get(which, which))

    def _substitute(self) -> None:
        self.subcode = self.subcode[_SUBSTITUTE_S.match(self.subcode).end():]  # type: ignore[union-attr]
        found = extract_delimited(self.subcode, "/")
        if found is None:
            raise _Answer(USAGE_SUBSTITUTE)
        pattern, rest = found
        found = extract_delimited("/" + rest, "/")
        if found is None:
            raise _Answer(USAGE_SUBSTITUTE)
        replacement, self.subcode = found
        flags = ""
        if match := _REGEX_FLAGS.match(self.subcode):
            flags = match[0]
            self.subcode = self.subcode[match.end():]
        if _BAD_FLAG.search(flags):
            raise _Answer(f"Bad regex modifier '{flags}'.  Only 'i' and 'g' are allowed.")
        if self.prevchange is None:
            raise _Answer("No recent code to change.")
        self.code = self.prevchange
        if flags in ("", "i", "g", "ig", "gi"):  # like the original, "gg" does nothing
            try:
                compiled = perl_regex.compile_perl(pattern, ignore_case="i" in flags)
                self.code, matches = perl_regex.substitute(
                    compiled, replacement, self.code, count=0 if "g" in flags else 1,
                    timeout=self.deadline - time.monotonic(), max_length=MAX_CODE)
            except perl_regex.PerlRegexError as e:
                raise _Answer(str(e)) from None
            except perl_regex.RegexTimeout:
                raise _Answer(REGEX_TOO_SLOW) from None
            except perl_regex.TooLong:
                raise _Answer(TOO_LONG) from None
            self.changed = self.changed or matches > 0
        self.prevchange = self.code

    def _replace_all(self, replacements: list[_Replacement]) -> None:
        """The queued replacements, after the loop, in the original's order; the numbered ones
        of one text together, each counting the matches in the code before them."""
        replacements.sort(key=_Replacement.sort_key)
        i = 0
        while i < len(replacements):
            group = [replacements[i]]
            while (i + len(group) < len(replacements)
                   and isinstance(group[0].which, int)
                   and replacements[i + len(group)].text == group[0].text):
                group.append(replacements[i + len(group)])
            i += len(group)
            if self.prevchange is None:
                raise _Answer("No recent code to change.")
            self.code, changed = _apply_replacements(self.prevchange, group)
            self.changed = self.changed or changed
            self.prevchange = self.code
        if not self.changed:
            raise _Answer(NO_REPLACEMENTS)


def _append(code: str, text: str) -> str:
    # Perl's s/$/ text/: before a final newline, if there is one.
    if code.endswith("\n"):
        return f"{code[:-1]} {text}\n"
    return f"{code} {text}"


def _text_pattern(text: str) -> re.Pattern[str]:
    """``text`` literally, at word boundaries where it starts or ends with a word character
    (ASCII, as the RE2 engine of the original)."""
    if not text:
        return re.compile(_EMPTY_AT_BOUNDARY, re.ASCII)
    before = _WORD_BEFORE if _ASCII_WORD.match(text[0]) else ""
    after = _WORD_AFTER if _ASCII_WORD.match(text[-1]) else ""
    return re.compile(before + re.escape(text) + after)


def _apply_replacements(code: str, group: list[_Replacement]) -> tuple[str, bool]:
    """One ``all`` or ``last`` replacement, or the numbered replacements of one text;
    ``_Answer(TOO_LONG)`` as soon as the result would pass ``MAX_CODE``."""
    pattern = _text_pattern(group[0].text)
    which = group[0].which
    if which == "last":
        last = _last_match(pattern, code)
        if last is None:
            return code, False
        if len(code) + len(group[0].to) - (last[1] - last[0]) > MAX_CODE:
            raise _Answer(TOO_LONG)
        return code[: last[0]] + group[0].to + code[last[1]:], True
    if which == "all":
        targets: dict[int, str] | None = None
    else:
        targets = {}
        for replacement in group:  # the first of two equal numbers wins
            assert isinstance(replacement.which, int)
            targets.setdefault(replacement.which, replacement.to)
    length = len(code)
    out: list[str] = []
    pos = 0
    for number, match in enumerate(pattern.finditer(code), 1):
        if targets is None:
            to = group[0].to
        elif number in targets:
            to = targets[number]
        else:
            continue
        length += len(to) - (match.end() - match.start())
        if length > MAX_CODE:  # before the piece is kept: nothing grows past the bound
            raise _Answer(TOO_LONG)
        out.append(code[pos : match.start()])
        out.append(to)
        pos = match.end()
    if not out:
        return code, False
    out.append(code[pos:])
    return "".join(out), True


def _last_match(pattern: re.Pattern[str], code: str) -> tuple[int, int] | None:
    """The match that starts last (overlapping ones count, as for a greedy prefix)."""
    for start in range(len(code), -1, -1):
        match = pattern.match(code, start)
        if match is not None:
            return match.start(), match.end()
    return None
