"""Which command lines skip bash (pure)."""

import pytest

from pbotvm.guest.plain_command import plain_argv


@pytest.mark.parametrize(("cmdline", "args", "argv"), [
    ("sh prog.sh", [], ["sh", "prog.sh"]),
    ("./prog", ["a b", "$HOME", "*"], ["./prog", "a b", "$HOME", "*"]),
    ("gcc -std=c11 -Wall prog.c -o prog -lm", [], ["gcc", "-std=c11", "-Wall", "prog.c", "-o",
                                                   "prog", "-lm"]),
    ("perl  -w prog.pl", [], ["perl", "-w", "prog.pl"]),
])
def test_plain_command_lines_become_argv(cmdline: str, args: list[str], argv: list[str]) -> None:
    assert plain_argv(cmdline, args) == argv


@pytest.mark.parametrize("cmdline", [
    "sh -c 'bc -q prog.bc'",           # quoting
    "node -p < prog.js",               # redirection
    "gcc prog.c && ./prog",            # a list
    "echo $HOME",                      # expansion
    "ls *.c",                          # globbing
    "ls ~",                            # tilde
    "a{b,c}",                          # braces
    "CC=gcc make",                     # an assignment
    "echo hello",                      # builtins are not looked up on PATH
    "time ./prog",                     # keywords neither
    "sh prog.sh\nrm x",                # a second command
    "sh prog.sh # comment",
    "",
    "   ",
])
def test_shell_syntax_goes_to_bash(cmdline: str) -> None:
    assert plain_argv(cmdline, ["x"]) is None
