"""The paste of ``-paste`` (the original's paste mode and its 0x0.st upload): the code as the
guest got it, then its command line, arguments and stdin, then the output, each block inside
the language's comment markers, so that the paste is itself a program in that language.

Pure: ``paste_bytes`` is exactly what is uploaded (``paste_service`` posts it).
"""

from __future__ import annotations

import re

from pbotvm.langspec import PasteMarkers
from pbotvm.tokenizer import PERL_SPACE

# The original's soft wrap (``s/(.{120})\s/$1\n/g`` over the UTF-8 bytes): a whitespace byte
# after 120 bytes without a newline becomes a newline. Only ASCII whitespace here: the original
# also took the bytes 0x85 and 0xA0 for whitespace, which cut characters such as "à" in two.
_SOFT_WRAP = re.compile(rb"([^\n]{120})[ \t\n\x0b\x0c\r]")


def paste_document(code: str, cmdline: str, output: str, markers: PasteMarkers, *,
                   arguments: str = "", stdin: str | None = None) -> str:
    """The paste as text. ``cmdline`` is the one the guest ran (with the paste options);
    ``stdin`` is the ``-stdin`` text as written, before escapes (none: not shown, so the
    default fortune line never is)."""
    header = cmdline + "\n"
    if arguments:
        header += f"arguments: {arguments}\n"
    if stdin:
        header += f"stdin: {stdin}\n"
    return (f"{code}\n\n{markers.cmdline_open}{header}{markers.cmdline_close}\n"
            f"{markers.output_open}{output.rstrip(PERL_SPACE)}\n{markers.output_close}")


def soft_wrap(data: bytes) -> bytes:
    return _SOFT_WRAP.sub(rb"\1\n", data)


def paste_bytes(code: str, cmdline: str, output: str, markers: PasteMarkers, *,
                arguments: str = "", stdin: str | None = None) -> bytes:
    """The upload: the document in UTF-8, soft-wrapped at 120 columns."""
    text = paste_document(code, cmdline, output, markers, arguments=arguments, stdin=stdin)
    return soft_wrap(text.encode("utf-8", "surrogatepass"))
