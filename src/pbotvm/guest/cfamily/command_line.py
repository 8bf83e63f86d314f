"""What the host's compiler command line (the request's ``cmdline``) says to the guest."""

from __future__ import annotations

import re

from pbotvm.tokenizer import split_line

_COMPILE_ONLY = re.compile(r"--(?:version|analyze)")
# gold links a snippet in 20-25 ms where the default linker takes 50-80 ms. Its messages are
# worded otherwise, so a link it has anything to say about is done again the usual way: its
# lines start with the object file gcc gave it (/tmp/ccXXXXXX.o:) or with its own name.
GOLD_OPTION = "-fuse-ld=gold"
_GOLD_SPOKE = re.compile(r"^(?:/tmp/cc\w+\.o:|\S*ld\.gold: )", re.MULTILINE)
NO_DEBUG_OPTION = "-g0"
_ADDRESS_SANITIZER = re.compile(r"-fsanitize=(?:[^ ]+,)?address")


def compiler_argv(cmdline: str) -> list[str]:
    """The command as the original guest split it: quotes stripped, no escapes, no shell."""
    return split_line(cmdline, strip_quotes=True, preserve_escapes=False)


def compile_only(cmdline: str) -> bool:
    """``--version`` or ``--analyze``: the compiler's answer is the whole answer."""
    return _COMPILE_ONLY.search(cmdline) is not None


def uses_address_sanitizer(cmdline: str) -> bool:
    """AddressSanitizer does not work under ptrace: such programs run without gdb."""
    return _ADDRESS_SANITIZER.search(cmdline) is not None


def gold_spoke(text: str) -> bool:
    """Whether the gold linker said something in a compile's output."""
    return _GOLD_SPOKE.search(text) is not None
