"""The function extractor shared by the C family and Java (the original's
_c_base.pm and java.pm used the same one).

Functions the user wrote among statements are lifted out, so that what is left can become
the body of ``main``. A candidate is found in the analysis copy (literals blanked, comments
removed), then re-read from the real text at the same offset, as the original did: the
offset can drift when comments came before it, and the re-read then starts earlier.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pbotvm.host.request.statements.analysis import BLOCK_COMMENT, WS, strip_block_comments
from pbotvm.tokenizer import PERL_SPACE

# return type, name, parameters, and everything from the opening brace (or <% or ??<) on.
C_SIGNATURE = re.compile(
    rf"^{WS}*([ *\w]+){WS}+([ ()*\w:\\]+){WS}*\(([^;{{]*){WS}*\){WS}*(\{{.*|<%.*|\?\?<.*)",
    re.IGNORECASE | re.MULTILINE | re.DOTALL)
JAVA_SIGNATURE = re.compile(
    rf"^([ *\w]+){WS}+([ ()*\w:]+){WS}*\(([^;{{]*){WS}*\){WS}*(\{{.*|<%.*|\?\?<.*)",
    re.IGNORECASE | re.MULTILINE | re.DOTALL)
_MAIN_NAME = re.compile(rf"{WS}*\(?{WS}*main{WS}*\)?{WS}*")
# The digraph and trigraph braces: the first one at a line start, the first one at a line end.
_OPEN_DIGRAPH = re.compile(rf"^{WS}*<%", re.MULTILINE)
_CLOSE_DIGRAPH = re.compile(rf"%>{WS}*$", re.MULTILINE)
_OPEN_TRIGRAPH = re.compile(rf"^{WS}*\?\?<", re.MULTILINE)
_CLOSE_TRIGRAPH = re.compile(r"\?\?>$", re.MULTILINE)
_LEADING_SPACE = re.compile(f"{WS}*")


class UnmatchedBrackets(ValueError):
    """A function body whose braces do not balance; the user sees ``error: unmatched brackets``."""

    def __init__(self) -> None:
        super().__init__("error: unmatched brackets")


@dataclass(frozen=True)
class Syntax:
    """What differs between the C and the Java extractor."""

    signature: re.Pattern[str]
    not_return_types: frozenset[str]  # a candidate with one of these is a statement
    not_names: frozenset[str]
    blank_block_comments: bool  # C re-reads the real text with its block comments as spaces


C_SYNTAX = Syntax(C_SIGNATURE, frozenset({"switch", "else", "while", "if", "for"}),
                  frozenset({"switch", "for", "while", "if"}), blank_block_comments=True)
JAVA_SYNTAX = Syntax(JAVA_SIGNATURE, frozenset({"else", "while", "if", "for"}),
                     frozenset({"for", "while", "if"}), blank_block_comments=False)


@dataclass(frozen=True)
class Extraction:
    functions: str  # the text before each function, then the function, for every function
    rest: str  # what follows the last function (all the code when there is none)
    has_main: bool


def take_braced(text: str) -> tuple[str, str] | None:
    """The leading ``{…}`` block (after whitespace) and the text after it; None if unbalanced.

    As Text::Balanced's extract_bracketed with ``{}``: a backslash escapes the next character,
    quotes are not special.
    """
    start = _LEADING_SPACE.match(text)
    assert start is not None  # it matches the empty string
    pos = start.end()
    if not text.startswith("{", pos):
        return None
    depth = 0
    at = pos
    while at < len(text):
        char = text[at]
        if char == "\\" and at + 1 < len(text):
            at += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[pos : at + 1], text[at + 1 :]
        at += 1
    return None


def _normalise_braces(body: str) -> str:
    body = _OPEN_DIGRAPH.sub("{", body, count=1)
    body = _CLOSE_DIGRAPH.sub("}", body, count=1)
    body = _OPEN_TRIGRAPH.sub("{", body, count=1)
    return _CLOSE_TRIGRAPH.sub("}", body, count=1)


def _locate(analysis: str, ret: str, name: str, params: str, body: str) -> int:
    """Where the candidate starts: the first occurrence of its text in the analysis copy
    (as the original searched; usually the candidate itself, but an earlier line that is no
    candidate, e.g. ``=int f(){}``, can hold the same text)."""
    literal = re.compile(
        rf"{re.escape(ret)}{WS}+{re.escape(name)}{WS}*\({WS}*{re.escape(params)}{WS}*\)"
        rf"{WS}*{re.escape(body)}", re.DOTALL)
    found = literal.search(analysis)
    assert found is not None  # the candidate's own text is there
    return found.start()


def extract_functions(code: str, analysis: str, syntax: Syntax) -> Extraction:
    """Lift the functions out of ``code``; ``analysis`` is its analysis copy.

    Raises UnmatchedBrackets when a function's body does not close.
    """
    functions: list[str] = []
    has_main = False
    while candidate := syntax.signature.search(analysis):
        at = _locate(analysis, *candidate.groups())
        analysis = analysis[: candidate.start()]
        real = code[at:]
        # Should the real text not match (a comment before the candidate moved the offset),
        # the original went on with the captures of its last successful match: the analysis
        # copy's, or those of the block-comment blanking just before.
        stale: tuple[str | None, ...] = candidate.groups()
        if syntax.blank_block_comments and (comments := list(BLOCK_COMMENT.finditer(real))):
            real = strip_block_comments(real)
            stale = (comments[-1][1] or "", "", "", None)
        code = before = code[:at]
        reread = syntax.signature.search(real)
        ret, name, params, body = reread.groups() if reread else stale
        assert ret is not None and name is not None and params is not None
        ret = ret.strip(PERL_SPACE)
        if not ret or ret in syntax.not_return_types or name in syntax.not_names:
            code += f"{ret} {name} ({params}) {body or ''}"
            continue
        braced = None if body is None else take_braced(_normalise_braces(body))
        if braced is None:
            raise UnmatchedBrackets
        block, code = braced
        analysis = code
        functions.append(f"{before}\n{ret} {name}({params}) {block}\n")
        has_main = has_main or _MAIN_NAME.fullmatch(name) is not None
    return Extraction("".join(functions), code, has_main)
