"""The Perl regex dialect of ``s/regex/replacement/`` on the ``regex`` engine.

The original applied the user's pattern as a Perl regex. ``regex`` (not ``re``) runs it here:
it knows most of Perl's syntax (possessive and atomic groups, ``\\p{..}``, ``\\K``, POSIX classes,
``(?<name>..)``) and, unlike ``re``, can stop a catastrophic backtrack after a time-out, which
matters because the edit runs inside vm-server. ``translate`` rewrites what the two dialects
spell differently; a pattern error becomes Perl's wording with its ``<-- HERE`` marker.

A runtime-interpolated Perl pattern never sees ``\\Q..\\E``, ``\\U`` and friends (those are string
escapes), so an unknown letter escape is the letter itself, as in the original.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field

import regex

# Perl's \h, \v and \R (Python's \v is the vertical-tab character).
_HORIZONTAL = r"\t \xa0\u1680\u180e\u2000-\u200a\u202f\u205f\u3000"
_VERTICAL = r"\n\x0b\f\r\x85\u2028\u2029"
_SIMPLE_ESCAPES = {
    "z": r"\Z",
    "Z": r"(?=\n?\Z)",
    "h": f"[{_HORIZONTAL}]",
    "H": f"[^{_HORIZONTAL}]",
    "v": f"[{_VERTICAL}]",
    "V": f"[^{_VERTICAL}]",
    "R": rf"(?:\r\n|[{_VERTICAL}])",
    "N": r"[^\n]",
}
_CLASS_ESCAPES = {"h": _HORIZONTAL, "v": _VERTICAL}
# Escapes both dialects read alike: kept as written.
_SHARED_ESCAPES = frozenset("dDwWsSbBAGKpPXtnrfa0123456789")
_CLASS_SHARED_ESCAPES = frozenset("dDwWsSpPtnrfab0123456789")
_POSIX_CLASSES = frozenset({"alpha", "digit", "alnum", "upper", "lower", "space", "blank",
                            "punct", "print", "graph", "cntrl", "xdigit", "word", "ascii"})

_BRACED_CODE = re.compile(r"([xo])\{([^}]*)\}")
_HEX_DIGITS = re.compile(r"[0-9A-Fa-f]*")
_OCTAL_DIGITS = re.compile(r"[0-7]*")
_SHORT_HEX = re.compile(r"x([0-9A-Fa-f]{0,2})")
_NAMED_CHAR = re.compile(r"N\{U\+([0-9A-Fa-f]+)\}")
_NAMED_REFERENCE = re.compile(r"k(?:<(\w+)>|\{(\w+)\}|'(\w+)')")
_NUMBERED_REFERENCE = re.compile(r"g(?:\{(-?\d+)\}|(-?\d+))")
_NAMED_G_REFERENCE = re.compile(r"g\{(\w+)\}")
_POSIX_CLASS = re.compile(r"\[:(\^?)(\w*):\]")
_QUOTED_NAME_GROUP = re.compile(r"\(\?'(\w+)'")
_RANGE_BEFORE = re.compile(r"(?:\\.|[^\\])-(?:\\.|[^\\])\Z")
_PROPERTY_BEFORE = re.compile(r"\\[pP](?:\{\^?([^}]*)\}|(\w))\Z")
_TEMPLATE_PART = re.compile(r"\$([1-9&`'])|\\([1-9])")

_MESSAGES = {  # regex's wording -> Perl's, and how far past regex's position Perl marks
    "nothing to repeat": ("Quantifier follows nothing", 1),
    "multiple repeat": ("Nested quantifiers", 1),
    "invalid group reference": ("Reference to nonexistent group", 0),
    "unknown group": ("Reference to nonexistent named group", 0),
    "missing >": ("Sequence (?<... not terminated", 0),
}


class PerlRegexError(ValueError):
    """A bad pattern, worded as Perl worded it (without Perl's ``at FILE line N.``)."""


class RegexTimeout(Exception):
    """The substitution ran past its time budget."""


class TooLong(Exception):
    """The substitution's result would pass its length bound."""


def _here(source: str, message: str, pos: int) -> PerlRegexError:
    return PerlRegexError(
        f"{message} in regex; marked by <-- HERE in m/{source[:pos]} <-- HERE {source[pos:]}/")


@dataclass
class _Translation:
    """The translated pattern, and where each piece of it came from in the Perl source."""

    source: str
    pieces: list[str] = field(default_factory=list)
    # (start in the translation, start and end in the source, piece is a verbatim copy)
    origins: list[tuple[int, int, int, bool]] = field(default_factory=list)
    length: int = 0
    groups: int = 0
    unclosed: list[int] = field(default_factory=list)  # source positions of open groups

    def emit(self, text: str, start: int, end: int) -> None:
        self.origins.append((self.length, start, end, text == self.source[start:end]))
        self.pieces.append(text)
        self.length += len(text)

    def source_pos(self, pos: int) -> int:
        """The source position of a position in the translation."""
        for out_start, start, end, verbatim in reversed(self.origins):
            if out_start <= pos:
                if verbatim:
                    return min(start + pos - out_start, end)
                return start if pos == out_start else end
        return 0

    @property
    def pattern(self) -> str:
        return "".join(self.pieces)


def _literal(char: str) -> str:
    return regex.escape(char, special_only=False)


def _escape(source: str, at: int, groups: int, in_class: bool) -> tuple[str, int]:
    """The translation of the escape at ``source[at] == '\\\\'`` and where it ends."""
    rest = source[at + 1:]
    if not rest:
        raise _here(source, "Trailing \\", at + 1)
    char = rest[0]
    if match := _BRACED_CODE.match(rest):
        # As Perl: the leading digits count, none is 0 (\x{zz} is a NUL).
        base = 16 if match[1] == "x" else 8
        digits = (_HEX_DIGITS if base == 16 else _OCTAL_DIGITS).match(match[2].strip())
        assert digits is not None  # '*': always matches
        value = int(digits[0] or "0", base)
        if value > sys.maxunicode:
            raise _here(source, f"Code point 0x{value:X} is not allowed", at + 1 + match.end())
        return _literal(chr(value)), at + 1 + match.end()
    if char == "x":
        match = _SHORT_HEX.match(rest)
        assert match is not None  # {0,2}: always matches
        return _literal(chr(int(match[1] or "0", 16))), at + 1 + match.end()
    if match := _NAMED_CHAR.match(rest):
        return _literal(chr(int(match[1], 16))), at + 1 + match.end()
    if char == "e":
        return _literal("\x1b"), at + 2
    if char == "c" and len(rest) > 1:
        return _literal(chr(ord(rest[1].upper()) ^ 64)), at + 3
    if in_class:
        if char in _CLASS_ESCAPES:
            return _CLASS_ESCAPES[char], at + 2
        if char in _CLASS_SHARED_ESCAPES or not char.isalnum():
            return "\\" + char, at + 2
        return _literal(char), at + 2
    if rest.startswith("N{"):  # a character by name: the same in both
        end = rest.find("}") + 1 or len(rest)
        return "\\" + rest[:end], at + 1 + end
    if char in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[char], at + 2
    if match := _NAMED_REFERENCE.match(rest):
        return f"(?P={match[1] or match[2] or match[3]})", at + 1 + match.end()
    if match := _NUMBERED_REFERENCE.match(rest):
        number = int(match[1] or match[2])
        if number < 0:
            number += groups + 1
        if number < 1:
            raise _here(source, "Reference to nonexistent or unclosed group",
                        at + 1 + match.end())
        return f"(?:\\{number})", at + 1 + match.end()
    if match := _NAMED_G_REFERENCE.match(rest):
        return f"(?P={match[1]})", at + 1 + match.end()
    if char in _SHARED_ESCAPES or not char.isalnum():
        return "\\" + char, at + 2
    return _literal(char), at + 2  # Perl passes an unknown escape through as the letter


def _char_class(source: str, at: int, out: _Translation) -> int:
    """Translate the bracketed class opening at ``source[at]``; returns where it ends."""
    out.emit("[", at, at + 1)
    i = at + 1
    if source.startswith("^", i):
        out.emit("^", i, i + 1)
        i += 1
    if source.startswith("]", i):  # a ']' first is a literal
        out.emit(r"\]", i, i + 1)
        i += 1
    while i < len(source):
        char = source[i]
        if char == "]":
            out.emit("]", i, i + 1)
            return i + 1
        if char == "\\":
            text, end = _escape(source, i, out.groups, in_class=True)
            out.emit(text, i, end)
            i = end
        elif match := _POSIX_CLASS.match(source, i):
            if match[2] not in _POSIX_CLASSES:
                raise _here(source, f"POSIX class [:{match[1]}{match[2]}:] unknown",
                            match.end())
            out.emit(match[0], i, match.end())
            i = match.end()
        elif char == "[":
            out.emit(r"\[", i, i + 1)  # literal in Perl; regex could read a nested set
            i += 1
        else:
            out.emit(char, i, i + 1)
            i += 1
    raise _here(source, "Unmatched [", at + 1)


def _group(source: str, at: int, out: _Translation) -> int:
    """Translate the opening of a group at ``source[at] == '('``; returns where it ends."""
    if match := _QUOTED_NAME_GROUP.match(source, at):
        out.groups += 1
        out.emit(f"(?P<{match[1]}>", at, match.end())
        return match.end()
    after = source[at + 1 : at + 4]
    named = after.startswith(("?<", "?P<")) and not after.startswith(("?<=", "?<!"))
    if named or not after.startswith("?"):
        out.groups += 1
    out.emit("(", at, at + 1)
    return at + 1


def translate(source: str) -> _Translation:
    """The Perl pattern ``source`` for the ``regex`` engine; PerlRegexError for what the
    translation itself finds wrong (an unmatched ``)`` or ``[``, an unknown POSIX class).
    Groups left open are listed in ``unclosed``: Perl reports an error before them first."""
    out = _Translation(source)
    open_groups = out.unclosed
    i = 0
    while i < len(source):
        char = source[i]
        if char == "\\":
            text, end = _escape(source, i, out.groups, in_class=False)
            out.emit(text, i, end)
            i = end
        elif char == "[":
            i = _char_class(source, i, out)
        elif char == "(":
            open_groups.append(i)
            i = _group(source, i, out)
        elif char == ")":
            if not open_groups:
                raise _here(source, "Unmatched )", i + 1)
            open_groups.pop()
            out.emit(")", i, i + 1)
            i += 1
        else:
            out.emit(char, i, i + 1)
            i += 1
    return out


def _perl_message(source: str, error: regex.error, out: _Translation) -> PerlRegexError:
    # regex's error has msg and pos, as re.error (its type stubs do not say so).
    text: str = getattr(error, "msg", str(error))
    at: int | None = getattr(error, "pos", None)
    pos = out.source_pos(out.length if at is None else at)
    message, past = _MESSAGES.get(text, ("", 0))
    if message:
        return _here(source, message, min(pos + past, len(source)))
    if text == "bad character range":
        found = _RANGE_BEFORE.search(source, 0, pos)
        return _here(source, f'Invalid [] range "{found[0] if found else ""}"', pos)
    if text == "unknown extension" and source[pos - 2 : pos] == "(?":
        return _here(source, f"Sequence (?{source[pos:pos + 1]}...) not recognized", pos + 1)
    if text == "unknown property":
        found = _PROPERTY_BEFORE.search(source, 0, pos)
        name = (found[1] or found[2]) if found else ""
        return _here(source, f'Can\'t find Unicode property definition "{name}"', pos)
    return _here(source, text[:1].upper() + text[1:], pos)


def compile_perl(source: str, *, ignore_case: bool = False) -> regex.Pattern[str]:
    """Compile a Perl pattern; PerlRegexError (Perl's wording) when it is not valid."""
    out = translate(source)
    flags = regex.V0 | (regex.IGNORECASE if ignore_case else 0)
    try:
        # With its open groups closed, so that an earlier error is the one reported.
        compiled = regex.compile(out.pattern + ")" * len(out.unclosed), flags)
    except regex.error as e:
        raise _perl_message(source, e, out) from None
    except (OverflowError, ValueError) as e:  # e.g. a repeat count past the engine's limit
        raise _here(source, str(e), len(source)) from None
    if out.unclosed:
        raise _here(source, "Unmatched (", out.unclosed[-1] + 1)
    return compiled


def substitute(pattern: regex.Pattern[str], replacement: str, text: str, *,
               count: int, timeout: float, max_length: int) -> tuple[str, int]:
    """``s/pattern/replacement/`` on ``text`` (``count=0``: every match); returns the new text
    and the number of matches. In the replacement ``$1``..``$9`` and ``\\1``..``\\9`` are the
    match's groups (empty when unset), ``$&`` the match, ``$``` and ``$'`` the text before
    and after it; everything else is literal. RegexTimeout after ``timeout`` seconds; TooLong
    as soon as the result would pass ``max_length`` characters (``$``` alone can square it)."""
    parts = _TEMPLATE_PART.split(replacement)
    length = len(text)

    def expand(match: regex.Match[str]) -> str:
        out = [parts[0]]
        for k in range(1, len(parts), 3):
            key = parts[k] or parts[k + 1]
            if key == "&":
                out.append(match[0])
            elif key == "`":
                out.append(match.string[: match.start()])
            elif key == "'":
                out.append(match.string[match.end():])
            elif int(key) <= pattern.groups:
                out.append(match[int(key)] or "")
            out.append(parts[k + 2])
        expanded = "".join(out)
        nonlocal length
        length += len(expanded) - (match.end() - match.start())
        if length > max_length:
            raise TooLong
        return expanded

    try:
        result, matches = pattern.subn(expand, text, count=count, timeout=max(timeout, 0.001))
    except TimeoutError:
        raise RegexTimeout from None
    return result, matches
