"""From the user's C statements to a whole program, as the original's _c_base.pm made it.

The user may write bare statements, functions among them, or a whole program. The code gets
the dialect's prelude unless it includes headers itself; functions are lifted out and the
rest becomes ``main``'s body, whose last statement is printed (``print_last_statement``).
Everything here is pure; astyle, the last step, is ``astyle.pretty``.

Two defects of the original are fixed on purpose: the code after the last function is kept
when there is a ``main`` or ``-nomain`` (the original dropped it), and ``whatis`` is never
wrapped as a last statement (the original's run then hung until gdb's time-out). Everything
else follows the original, quirks included (e.g. a ``|n`` anywhere becomes a newline).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pbotvm.host.request.newlines import newlines_outside_quotes
from pbotvm.host.request.statements.analysis import WS, analysis_copy, blank_literals
from pbotvm.host.request.statements.custom_options import CustomOptions
from pbotvm.host.request.statements.functions import C_SYNTAX, extract_functions
from pbotvm.host.request.statements.program import (
    BLANK_LINES,
    DOUBLED_SEMICOLON,
    SEMICOLON_AFTER_BRACE,
    given_program,
    main_body,
    split_leading_lines,
)
from pbotvm.tokenizer import PERL_SPACE

# An #include after a '#': the first search runs forward from the '#', the second (as in the
# original, whose failed first search reset the position) from the start of the code.
_ANGLE_INCLUDE = re.compile(rf"include{WS}*<[^>\n]*>(?!\n)")
_QUOTE_INCLUDE = re.compile(rf'include{WS}*"[^"\n]*"(?!\n)')
_HEADER_LINE = re.compile(rf"{WS}*(#.*\n{{1,2}}|using.*\n{{1,2}})")
_FIRST_DIRECTIVE = re.compile(rf"^{WS}*(#.*)", re.MULTILINE | re.DOTALL)
_PRELUDE_H = re.compile(r"^#include <prelude.h>", re.MULTILINE)

# The last-statement rule (print_last_statement). The gdb commands of prelude.h in a function
# keep the last statement as it is; so do these words in the statement itself.
_GDB_COMMANDS = re.compile(r"\b(?:ptype|dump|print|trace|watch|whatis|gdb)\b")
_LAST_LINE = re.compile(rf"(\n?){WS}*(.*?);?$")
_UNPRINTABLE_WORDS = re.compile(
    r"\b(?:\w*scanf|fgets|memset|printf|puts|while|for|do|if|switch|ptype|dump|print|trace"
    r"|watch|whatis|gdb|assert|main|return|exec[lvpe]+)\b")
_DECLARATION = re.compile(rf"^\w+{WS}+(?<!sizeof )\w+")  # `int a`, but not `sizeof a`
_CODE_MARKS = re.compile(r"[#{}]")
_COMMENT_MARKS = re.compile(r"/\*|\*/|//")
_WORD = re.compile(r"\w")
_ASSIGNMENT = re.compile(rf"(?:\b|{WS})=(?:\b|{WS})")  # `=`, but not `==`, `<=` or `+=`

_MAIN_OPEN = "int main(int argc, char *argv[]) {\n"


@dataclass(frozen=True)
class Dialect:
    """What the preprocessing needs to know of a C-family language."""

    prelude: str  # used when the code has no #include of its own
    gdb_extensions: bool = True  # prelude.h and print_last_statement (tendra has neither)
    # The analysis strips block comments before // comments (c89), not after.
    block_comments_first: bool = False


@dataclass(frozen=True)
class Preprocessed:
    code: str
    # The code ends in a directive without a newline: the output filters add a warning.
    unterminated_directive: bool


def insert_newlines(code: str) -> str:
    """Step 4: a newline after each statement's ``;`` and after each ``#include``.

    A character scan tracking quotes, parenthesis depth, preprocessor lines and backslashes,
    as the original's; the position jumps and the escaped-state quirks are its own.
    """
    single = double = escaped = directive = False
    parens = 0
    pos = 0
    while pos < len(code):
        char = code[pos]
        pos += 1
        if char == "\\":
            escaped = not escaped
        elif char == "#" and not (directive or escaped or single or double):
            directive = True
            include = _ANGLE_INCLUDE.search(code, pos) or _QUOTE_INCLUDE.search(code)
            if include is not None:
                pos = include.end()
                code = code[:pos] + "\n" + code[pos:]
                directive = False
        elif char == '"':
            if not (escaped or single):
                double = not double
            escaped = False
        elif char == "(" and not (single or double):
            parens += 1
        elif char == ")" and not (single or double):
            parens = max(parens - 1, 0)
        elif char == ";" and not (directive or single or double) and parens == 0:
            if code[pos : pos + 1] not in ("\n", "\r"):
                code = code[:pos] + "\n" + code[pos:]
                pos += 1
        elif char == "'":
            if not (escaped or double):
                single = not single
            escaped = False
        elif char == "n" and escaped:
            if not (single or double):
                # The scan goes on one character further than the shortened code warrants.
                code = code[: pos - 2] + "\n" + code[pos:]
                directive = False
            escaped = False
        elif char == "\n" and directive and not (single or double):
            directive = False
        else:
            escaped = False
    return code


def split_header(precode: str) -> tuple[str, str]:
    """Step 6: the leading preprocessor and ``using`` lines, and the rest."""
    return split_leading_lines(precode, _HEADER_LINE)


def has_unterminated_directive(precode: str) -> bool:
    """Step 7: the first line that is a directive runs to the end without a newline."""
    directive = _FIRST_DIRECTIVE.search(precode)
    return directive is not None and "\n" not in directive[1]


def is_printable_statement(statement: str) -> bool:
    """Whether a last statement gets wrapped in ``print_last_statement``."""
    return (_UNPRINTABLE_WORDS.search(statement) is None
            and _DECLARATION.search(statement) is None
            and _CODE_MARKS.search(statement) is None
            and _COMMENT_MARKS.search(statement) is None
            and "??" not in statement
            and _WORD.search(statement) is not None
            and _ASSIGNMENT.search(statement) is None)


def wrap_last_statement(functions: str, body: str) -> str:
    """The body of main with its last line wrapped, when the last-statement rule allows it."""
    if _GDB_COMMANDS.search(functions):
        return body
    last = _LAST_LINE.search(body)
    assert last is not None  # it can match the empty string at the end
    if not is_printable_statement(last[2]):
        return body
    return f"{body[: last.start()]}{last[1]} print_last_statement({last[2]});"


def clean_up(code: str) -> str:
    """Step 12: ``|n`` to newline, trim, drop doubled and stray ``;``, squeeze blank lines."""
    code = code.replace("|n", "\n").strip(PERL_SPACE)
    code = DOUBLED_SEMICOLON.sub(";\n", code)
    code = SEMICOLON_AFTER_BRACE.sub(r"\1\n", code)
    return BLANK_LINES.sub("\n\n", code)


def preprocess(code: str, dialect: Dialect, custom: CustomOptions) -> Preprocessed:
    """Steps 2-12 on the code left after the options; raises ``UnmatchedBrackets``."""
    gdb_extensions = dialect.gdb_extensions and not custom.noheaders
    code = newlines_outside_quotes(code)
    code = "".join(f"#include <{name}> " for name in custom.includes) + code
    code = insert_newlines(code)
    if "#include" not in blank_literals(code) and not custom.noheaders:
        code = dialect.prelude + code
    header, precode = split_header(code)
    unterminated = has_unterminated_directive(precode)
    if gdb_extensions and not _PRELUDE_H.search(header):
        header += "\n#include <prelude.h>\n"

    analysis = analysis_copy(precode, block_comments_first=dialect.block_comments_first)
    extraction = extract_functions(precode, analysis, C_SYNTAX)
    functions = extraction.functions
    rest = extraction.rest.strip(PERL_SPACE)
    if extraction.has_main or custom.nomain:
        program = given_program(header, functions, rest)
    else:
        closing, body = main_body(rest)
        functions += closing
        if gdb_extensions:
            body = wrap_last_statement(functions, body)
        program = f"{header}\n{functions}\n{_MAIN_OPEN}{body}\n;\nreturn 0;\n}}\n"
    return Preprocessed(clean_up(program), unterminated)
