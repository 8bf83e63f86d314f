"""Command lines that bash would only look up and exec: we do that ourselves.

``bash -c 'sh prog.sh'`` execs ``sh`` in place of itself, so the program runs exactly as it
would without bash; bash's start-up (~95 ms under TCG, ~3 ms on hardware) buys nothing.
Anything with shell syntax, a builtin or an assignment still goes through bash.
"""

from __future__ import annotations

import re

# Characters that mean nothing to bash in an unquoted word (no expansion, quoting,
# redirection, globbing, comments or command separators); words split on single spaces.
_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./ -]+")
# bash 5.2's `compgen -b` and `compgen -k`: such a first word is not looked up on PATH.
BASH_BUILTINS = frozenset({
    ".", ":", "[", "alias", "bg", "bind", "break", "builtin", "caller", "cd", "command",
    "compgen", "complete", "compopt", "continue", "declare", "dirs", "disown", "echo",
    "enable", "eval", "exec", "exit", "export", "false", "fc", "fg", "getopts", "hash", "help",
    "history", "jobs", "kill", "let", "local", "logout", "mapfile", "popd", "printf", "pushd",
    "pwd", "read", "readarray", "readonly", "return", "set", "shift", "shopt", "source",
    "suspend", "test", "times", "trap", "true", "type", "typeset", "ulimit", "umask",
    "unalias", "unset", "wait", "if", "then", "else", "elif", "fi", "case", "esac", "for",
    "select", "while", "until", "do", "done", "in", "function", "time", "{", "}", "!", "[[",
    "]]", "coproc",
})


def plain_argv(cmdline: str, arguments: list[str]) -> list[str] | None:
    """The argv bash would exec for ``cmdline`` followed by the single-quoted ``arguments``,
    or None when bash has to interpret the command line."""
    if not _PLAIN.fullmatch(cmdline):
        return None
    words = cmdline.split()
    if not words or "=" in words[0] or words[0] in BASH_BUILTINS:
        return None
    return [*words, *arguments]
