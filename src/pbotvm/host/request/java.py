"""From the user's Java statements to a whole ``prog.java``, as the original's java.pm did.

The same idea as the C family's (``cfamily.preprocess``): imports form the header, methods
are lifted out with the shared extractor, and the rest becomes ``main``, all inside
``class prog``. Java is sent as it comes out of here: the original's astyle call for Java
always failed (its options went as one argument).
As for C, the code after the last method is kept when there is a ``main`` or ``-nomain``
(the original's java.pm dropped it, the same defect as its C extractor's).
"""

from __future__ import annotations

import re

from pbotvm.host.request.language import Language, Source, registers
from pbotvm.host.request.newlines import newlines_outside_quotes
from pbotvm.host.request.statements.analysis import WS, analysis_copy, blank_literals
from pbotvm.host.request.statements.custom_options import CustomOptions, take_java_options
from pbotvm.host.request.statements.functions import JAVA_SYNTAX, extract_functions
from pbotvm.host.request.statements.program import (
    BLANK_LINES,
    DOUBLED_SEMICOLON,
    SEMICOLON_AFTER_BRACE,
    given_program,
    main_body,
    split_leading_lines,
)
from pbotvm.langspec import Behaviour
from pbotvm.tokenizer import PERL_SPACE

_IMPORT = re.compile(r"\bimport" + WS)
_IMPORT_LINE = re.compile(rf"{WS}*(import .*\n{{1,2}})")
# A statement's `;` that follows a comment is dropped, with the next statement's `;`.
_SEMICOLON_AROUND_BLOCK_COMMENT = re.compile(rf";({WS}*/\*.*?\*/{WS}*);\n", re.DOTALL)
_SEMICOLON_AROUND_LINE_COMMENT = re.compile(rf";({WS}*//.*?{WS}*);\n", re.DOTALL)


def insert_newlines(code: str) -> str:
    """A newline after each statement's ``;``, each ``{`` and each ``}`` (the original's scan)."""
    single = double = escaped = False
    parens = 0
    pos = 0
    while pos < len(code):
        char = code[pos]
        pos += 1
        unquoted = not (single or double)
        if char == "\\":
            escaped = not escaped
        elif char == '"':
            if not (escaped or single):
                double = not double
            escaped = False
        elif char == "(" and unquoted:
            parens += 1
        elif char == ")" and unquoted:
            parens = max(parens - 1, 0)
        elif (char == ";" and unquoted and parens == 0) or (char == "{" and unquoted):
            if code[pos : pos + 1] not in ("\n", "\r"):
                code = code[:pos] + "\n" + code[pos:]
                pos += 1
        elif char == "'":
            if not (escaped or double):
                single = not single
            escaped = False
        elif char == "n" and escaped:
            if unquoted:
                code = code[: pos - 2] + "\n" + code[pos:]
            escaped = False
        elif char == "}" and unquoted:
            if code[pos : pos + 1] not in ("\n", "\r", ";"):
                code = code[:pos] + "\n" + code[pos:]
                pos += 1
        else:
            escaped = False
    return code


def split_imports(precode: str) -> tuple[str, str]:
    return split_leading_lines(precode, _IMPORT_LINE)


def clean_up(code: str) -> str:
    code = code.replace("|n", "\n").strip(PERL_SPACE)
    code = DOUBLED_SEMICOLON.sub(";\n", code)
    code = _SEMICOLON_AROUND_BLOCK_COMMENT.sub(r";\1", code)
    code = _SEMICOLON_AROUND_LINE_COMMENT.sub(r";\1", code)
    code = SEMICOLON_AFTER_BRACE.sub(r"\1\n", code)
    return BLANK_LINES.sub("\n\n", code)


def preprocess(code: str, prelude: str, custom: CustomOptions) -> str:
    """The whole ``prog.java``; raises ``UnmatchedBrackets``. ``custom.includes`` is unused."""
    code = insert_newlines(newlines_outside_quotes(code))
    if not _IMPORT.search(blank_literals(code)) and not custom.noheaders:
        code = prelude + code
    header, precode = split_imports(code)
    extraction = extract_functions(precode, analysis_copy(precode), JAVA_SYNTAX)
    functions = extraction.functions
    rest = extraction.rest.strip(PERL_SPACE)
    if extraction.has_main or custom.nomain:
        program = given_program(header, functions, rest)
    else:
        closing, body = main_body(rest)
        program = (f"{header}\nclass prog {{\n{functions}{closing}\n"
                   f"public static void main(String[] args) {{\n{body}\n;\n}}\n}}\n")
    return clean_up(program)


@registers(Behaviour.JAVA)
class Java(Language):
    """Bare statements go into ``class prog``'s main (as java.pm did); sent as written (the
    original's astyle call for Java always failed)."""

    def take_custom_options(self, code: str) -> tuple[str, CustomOptions]:
        return take_java_options(code)

    def preprocess(self, code: str, custom: CustomOptions) -> Source:
        return Source(preprocess(code, self.spec.prelude, custom))
