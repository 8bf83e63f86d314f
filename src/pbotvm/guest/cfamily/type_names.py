"""What gdb's ``whatis`` and ``ptype`` print for a statement, found by the compile instead:
the type's name as gdb spells it (``long``, not DWARF's ``long int``; ``_Bool`` for ``bool``),
chosen by ``_Generic``.

``_Generic`` sees through typedefs, where gdb's ``whatis`` shows the typedef's name
(``size_t``) and its ``ptype`` what is behind it: so every name in the statement must be
declared with the basic type words alone (``declared_plainly``). ``sizeof`` is refused: gdb
types it ``int``. A name's own qualifiers count (``const int``), an expression has none.
"""

from __future__ import annotations

import re

from pbotvm.guest.cfamily.enums import Enum

# C's spelling in the program -> gdb's, for the types a statement of basic words can have.
_ARITHMETIC = {
    "_Bool": "_Bool", "char": "char", "signed char": "signed char",
    "unsigned char": "unsigned char", "short": "short", "unsigned short": "unsigned short",
    "int": "int", "unsigned int": "unsigned int", "long": "long",
    "unsigned long": "unsigned long", "long long": "long long",
    "unsigned long long": "unsigned long long", "float": "float", "double": "double",
    "long double": "long double",
}
_POINTED = ("char", "signed char", "unsigned char", "short", "unsigned short", "int",
            "unsigned int", "long", "unsigned long", "long long", "unsigned long long",
            "float", "double", "long double", "void")
_POINTERS = {f"{t} *": f"{t} *" for t in _POINTED} | {
    f"const {t} *": f"const {t} *" for t in _POINTED} | {"char **": "char **"}
TYPES = _ARITHMETIC | _POINTERS
_QUALIFIED = {f"const {c}": f"const {g}" for c, g in _ARITHMETIC.items()}

_BASIC_WORDS = frozenset({"char", "short", "int", "long", "signed", "unsigned", "float",
                          "double", "_Bool", "bool", "void", "const", "volatile", "register",
                          "static", "auto", "extern"})
# A word before a name that does not declare it: ``return x;``, ``case x:``.
_NOT_DECLARING = frozenset({"return", "case", "goto", "sizeof", "else", "do", "typeof",
                            "__typeof__", "_Alignof", "alignof"})


def declared_plainly(code: str, name: str) -> bool:
    """Whether ``name`` is declared in ``code`` (comments and literals blanked), and only
    ever with basic type words (then ``_Generic`` finds the type gdb names)."""
    words = re.findall(rf"\b(\w+)[\s*]*(?<![\w.>])\b{re.escape(name)}\s*(?=[=;,)\[])", code)
    declaring = [word for word in words if word not in _NOT_DECLARING]
    return bool(declaring) and all(word in _BASIC_WORDS for word in declaring)


def _cases(expression: str, bare: bool) -> tuple[str, dict[str, str]]:
    """What ``_Generic`` looks at, and gdb's name for each type it may be. A bare name is
    looked at through its address, which keeps its qualifiers."""
    if bare:
        return f"&({expression})", {f"{c} *": g for c, g in (TYPES | _QUALIFIED).items()}
    return f"({expression})", TYPES


def generic(expression: str, bare: bool) -> str:
    """A C expression for gdb's name of the type: a string (``known`` says whether there is
    one)."""
    subject, cases = _cases(expression, bare)
    associations = ", ".join(f'{c}: "{g}"' for c, g in cases.items())
    return f'_Generic({subject}, {associations}, default: "")'


def known(expression: str, bare: bool) -> str:
    """A C constant expression: whether ``generic`` names the type (else the compile stops
    and gdb answers)."""
    subject, cases = _cases(expression, bare)
    return f"_Generic({subject}, {', '.join(f'{c}: 1' for c in cases)}, default: 0)"


def enum_name(enum: Enum, *, full: bool) -> str:
    """gdb's ``whatis`` (``enum e``) or ``ptype`` (``enum e {A, B = 5}``) of the enum: a value
    is shown where it is not the one after the enumerator before."""
    if not full:
        return f"enum {enum.tag}"
    shown, expected = [], 0
    for name, value in enum.enumerators:
        shown.append(name if value == expected else f"{name} = {value}")
        expected = value + 1
    return f"enum {enum.tag} {{{', '.join(shown)}}}"
