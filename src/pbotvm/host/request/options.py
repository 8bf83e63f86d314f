"""The options a user writes around the code, and the command line they produce.

Pure functions for vm-exec (the original's vm-exec options, standard and command-line options,
``\\n`` handling and stdin). The order of use is ``strip_exec_options`` ->
``parse_standard_options`` -> ``Language.preprocess_code`` -> ``Language.cmdline`` (and
``unescape_stdin`` on the stdin text).

Rules. Words are cut the sh way (``tokenizer.token_spans``): quotes group, a backslash
escapes, an unbalanced quote is an ordinary character. Where these differ from the original
they do so on purpose (the original's whitespace collapse, quote splitting and options
recognised anywhere, even inside words, altered code):

1. ``-lang= -vm= -vm-serial= -vm-cid= -vm-vport=``: only at the very start of the code, one
   after another; the value runs to the next whitespace and is lower-cased.
2. ``-stdin``: where it starts a word (at the start or after whitespace) on the last line,
   followed by whitespace, ``=`` or the end. Everything after it (less one space or ``=``) is
   stdin, verbatim: it comes last and may contain anything. ``echo my-stdin-var`` is code.
3. ``-info -noinfo -paste -nopaste -args V -args=V -arguments V -arguments=V`` (``--`` and
   ``-no-`` spellings too) count only as leading words, among the ``-`` words before the
   code, or as trailing words after it; elsewhere they are code. The last of a kind wins.
   ``-args`` with nothing after it stays in the code; a leading ``--`` ends rule 3.
   One pair of surrounding ``"`` (else ``'``) is removed from the ``-args`` value.
4. The code is the text between, byte for byte: code without options comes out unchanged
   (the original re-joined words with single spaces, which broke indentation and
   ``"a".txt``). Whitespace next to removed options goes with them.
5. The leading ``-`` words left over are the compiler/interpreter options (``cmdline_options``,
   joined by single spaces); when there are any, they replace the language's defaults.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from pbotvm.host.request.statements.custom_options import CustomOptions
from pbotvm.tokenizer import PERL_SPACE, token_spans

USAGE = (
    "Usage: cc [-lang=<language>] [-vm=<virtual machine>] [-info] [-paste] "
    '[-args "command-line arguments"] [compiler/language options] <code> '
    "[-stdin <stdin input>]"
)

_WS = re.escape(PERL_SPACE)
_EXEC_OPTION = re.compile(rf"-(lang|vm-cid|vm-vport|vm-serial|vm)=([^{_WS}]+)[{_WS}]*")
_STDIN = re.compile(rf"(?<![^{_WS}])-stdin(?![^={_WS}])")
_FORTUNE_BREAKS = re.compile(r"[\n\r\t]")
_SPACE_RUN = re.compile(rf"[{_WS}]+")

_FLAGS = {
    "info": ("info", True), "noinfo": ("info", False), "no-info": ("info", False),
    "paste": ("paste", True), "nopaste": ("paste", False), "no-paste": ("paste", False),
}
_ARGUMENTS = ("args", "arguments")
_BARE_ARGUMENTS = frozenset({"-args", "--args", "-arguments", "--arguments"})


@dataclass(frozen=True)
class ParsedOptions:
    code: str
    info: bool = False
    arguments: str | None = None  # None: not given, keep the request's own arguments
    paste: bool = False
    stdin: str | None = None  # as written; None: not given
    cmdline_options: str = ""
    custom: CustomOptions = field(default_factory=CustomOptions)  # the language's own


def strip_exec_options(code: str) -> tuple[str, dict[str, str]]:
    """Rule 1: the leading vm-exec options, as ``{"lang": "c2x", "vm-cid": "7", ...}``."""
    found: dict[str, str] = {}
    pos = 0
    while match := _EXEC_OPTION.match(code, pos):
        found[match[1]] = match[2].lower()
        pos = match.end()
    return code[pos:], found


def parse_standard_options(
    code: str, take_custom: Callable[[str], tuple[str, CustomOptions]] | None = None,
) -> ParsedOptions:
    """Rules 2-5; ``take_custom`` takes the language's own options (the C family's
    ``-nomain``...) between the standard options and the compiler options, as the original."""
    code, stdin = _split_stdin(code)
    code, settings = _split_standard_options(code)
    code, custom = take_custom(code) if take_custom else (code, CustomOptions())
    code, cmdline_options = take_cmdline_options(code)
    return ParsedOptions(
        code=code,
        info=bool(settings.get("info", False)),
        arguments=_unquote(str(settings["arguments"])) if "arguments" in settings else None,
        paste=bool(settings.get("paste", False)),
        stdin=stdin,
        cmdline_options=cmdline_options,
        custom=custom,
    )


def _split_stdin(code: str) -> tuple[str, str | None]:
    # The last line, not counting one final newline (which stays with the code).
    end = len(code) - 1 if code.endswith("\n") else len(code)
    match = _STDIN.search(code, code.rfind("\n", 0, end) + 1, end)
    if match is None:
        return code, None
    start = match.end() + (code[match.end() : match.end() + 1] in (" ", "="))
    return code[: match.start()].rstrip(" \t") + code[end:], code[start:end]


def _option(word: str) -> tuple[str, str | bool] | None:
    """A flag or ``-args=VALUE`` word as ``(setting, value)``."""
    name = word[2:] if word.startswith("--") else word[1:] if word.startswith("-") else ""
    if name in _FLAGS:
        return _FLAGS[name]
    key, equals, value = name.partition("=")
    return ("arguments", value) if equals and key in _ARGUMENTS else None


def _split_standard_options(code: str) -> tuple[str, dict[str, str | bool]]:
    spans = token_spans(code)

    def word(k: int) -> str:
        return code[spans[k][0] : spans[k][1]]

    settings: list[tuple[str, str | bool]] = []
    kept: list[str] = []  # leading words that are not ours: compiler options
    first = 0  # the first word of the code
    removed = stopped = False
    while first < len(spans):
        current = word(first)
        if len(current) < 2 or current[0] != "-":
            break
        if current == "--":
            stopped = True
            break
        option = _option(current)
        if current in _BARE_ARGUMENTS:
            if first + 1 == len(spans):
                break  # no value: it stays in the code
            settings.append(("arguments", word(first + 1)))
            first += 2
        elif option is not None:
            settings.append(option)
            first += 1
        else:
            kept.append(current)
            first += 1
            continue
        removed = True

    last = len(spans)  # the first trailing option word
    trailing: list[tuple[str, str | bool]] = []
    while last > first and not stopped:
        if last - 2 >= first and word(last - 2) in _BARE_ARGUMENTS:
            trailing.append(("arguments", word(last - 1)))
            last -= 2
        elif (option := _option(word(last - 1))) is not None:
            trailing.append(option)
            last -= 1
        else:
            break
    settings.extend(reversed(trailing))
    return _assemble(code, spans, kept if removed else None, first, last), dict(settings)


def _assemble(
    code: str, spans: list[tuple[int, int]], kept: list[str] | None, first: int, last: int,
) -> str:
    """The code between the option words; ``kept`` is None when no leading word went."""
    start = 0
    prefix = ""
    if kept is not None:
        start = spans[first][0] if first < len(spans) else len(code)
        prefix = "".join(f"{word} " for word in kept)
    if last < len(spans):
        return prefix + code[start : spans[last][0]].rstrip(PERL_SPACE)
    return prefix + code[start:]


def _unquote(value: str) -> str:
    for quote in ('"', "'"):
        if len(value) >= 2 and value[0] == value[-1] == quote:
            return value[1:-1]
    return value


def take_cmdline_options(code: str) -> tuple[str, str]:
    """Rule 5: the leading ``-`` words, as (rest of the code, options joined by spaces)."""
    spans = token_spans(code)
    options: list[str] = []
    for start, end in spans:
        if end - start < 2 or code[start] != "-":
            break
        options.append(code[start:end])
    if not options:
        return code, ""
    rest = code[spans[len(options)][0] :] if len(options) < len(spans) else ""
    return rest, " ".join(options)


def _code_point(base: int) -> Callable[[re.Match[str]], str]:
    def convert(match: re.Match[str]) -> str:
        value = int(match[1], base)
        # A value that is no Unicode scalar could not be sent as UTF-8: it stays as written.
        if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
            return match[0]
        return chr(value)

    return convert


_STDIN_ESCAPES: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    (re.compile(r"(?<!\\)\\n"), "\n"),
    (re.compile(r"(?<!\\)\\r"), "\r"),
    (re.compile(r"(?<!\\)\\t"), "\t"),
    (re.compile(r"(?<!\\)\\b"), "\b"),
    (re.compile(r"(?<!\\)\\x([0-9a-f]+)", re.IGNORECASE), _code_point(16)),
    (re.compile(r"(?<!\\)\\([0-7]+)"), _code_point(8)),
)


def unescape_stdin(text: str) -> str:
    """The original's stdin escapes: ``\\n \\r \\t \\b \\xHH.. \\ooo``, one kind after another,
    each only where the backslash is not itself preceded by a backslash (so ``\\\\n``
    stays)."""
    if "\\" not in text:
        return text
    for pattern, replace in _STDIN_ESCAPES:
        text = pattern.sub(replace, text)
    return text


def fortune_to_stdin(text: str) -> str:
    """The default stdin from ``fortune`` output, flattened to one line as the original did."""
    text = _FORTUNE_BREAKS.sub(" ", text).replace(":", " - ")
    return _SPACE_RUN.sub(" ", text).strip(PERL_SPACE)
