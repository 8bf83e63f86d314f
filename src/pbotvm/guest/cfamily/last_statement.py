"""The host's ``print_last_statement(...)`` wrapper, as the original guest dealt with it.

The host wraps a snippet's last statement so that gdb prints its value. The guest compiles
the code first without the wrappers (the diagnostics then name the plain statement), and when
gdb could not evaluate one (one of the original's five errors in its answer, or gdb's word
for a C++ name it cannot see, which the original never met: it could not run C++ snippets),
compiles and runs again without them.
"""

from __future__ import annotations

import re

_WRAPPED_LINE = re.compile(r"print_last_statement\((.*)\);$", re.MULTILINE)
_WRAPPED = re.compile(r"print_last_statement\((.*)\);", re.MULTILINE)
_GDB_FAILED = re.compile("|".join([
    r"A syntax error in expression",
    r"No symbol.*in current context",
    r"has unknown return type; cast the call to its declared return",
    r"Can't take address of.*which isn't an lvalue",
    r"cannot subscript something",
    r'No symbol ".*" in namespace ".*"\.',  # std::cout << "hi" in C++
]))


# A wrapped statement writing to a standard stream (``std::cout << "hi"``): gdb has no symbol
# for the stream (the C++ runtime's symbols are not in the guest) and fails on it every time.
_STREAM = r"(?:std\s*::\s*)?\b(?:w?cout|w?cerr|w?clog)\b"
_STREAM_WRAPPED = re.compile(rf"\s*{_STREAM}\s*<<")
_STREAM_NAME = re.compile(_STREAM)
_SHIFTED = re.compile(r"\s*<<")


def has_wrapper(code: str) -> bool:
    """Whether some line ends with a wrapped statement."""
    return _WRAPPED_LINE.search(code) is not None


def unwrapped(code: str) -> str:
    """The code for the first compile: wrappers that end a line become their statement."""
    return _WRAPPED_LINE.sub(r"\1;", code)


def without_wrappers(code: str) -> str:
    """The code for the second try: every wrapper becomes its statement."""
    return _WRAPPED.sub(r"\1;", code)


def gdb_failed(result: str) -> bool:
    """Whether gdb's answer says it could not evaluate a wrapped statement."""
    return _GDB_FAILED.search(result) is not None


def beyond_gdb(code: str) -> bool:
    """Whether gdb would fail on the code's wrapped statements for certain, so that a run under
    gdb would only lead to ``without_wrappers``: each writes to a standard stream, and each
    such name is followed by ``<<`` (the code declares no ``cout`` of its own that gdb could
    find). Under TCG that run was ~6 s of a C++ hello's 11."""
    wrapped = _WRAPPED.findall(code)
    return (bool(wrapped) and all(_STREAM_WRAPPED.match(expression) for expression in wrapped)
            and all(_SHIFTED.match(code, name.end()) for name in _STREAM_NAME.finditer(code)))
