"""The enumerators of a variable's enum, read from the code, so that the program can print
its value as gdb does: by the name of the enumerator that has it (``v = B``).

Only where that reading is plain: a tagged enum defined once, whose enumerators are names
with, at most, a decimal value; a variable declared right after ``enum TAG`` (or after its
definition). Anything else (an anonymous enum, a typedef, values made of expressions or
macros) is not read, and gdb answers. The compile then checks that the variable at the place
printed has that very type (``last_value``), whatever a scope may hide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_DEFINITION = re.compile(r"\benum\s+([A-Za-z_]\w*)\s*\{([^{}]*)\}")
_ENUMERATOR = re.compile(r"\s*([A-Za-z_]\w*)\s*(?:=\s*(-?\s*(?:0|[1-9]\d*))\s*)?")


@dataclass(frozen=True)
class Enum:
    tag: str
    enumerators: tuple[tuple[str, int], ...]  # in the order of the definition

    def name_of(self, value: int) -> str | None:
        """What gdb prints for ``value``: the first enumerator that has it."""
        return next((name for name, has in self.enumerators if has == value), None)


def _enumerators(body: str) -> tuple[tuple[str, int], ...] | None:
    items = body.split(",")
    if items and not items[-1].strip():
        items.pop()  # a trailing comma
    found, value = [], 0
    for item in items:
        match = _ENUMERATOR.fullmatch(item)
        if match is None:
            return None
        if match[2] is not None:
            value = int(match[2].replace(" ", ""))
        if not _INT_MIN <= value <= _INT_MAX:
            return None
        found.append((match[1], value))
        value += 1
    return tuple(found) or None


def enum_of(code: str, name: str) -> Enum | None:
    """The enum ``name`` is declared with in ``code`` (comments and literals blanked), when
    it reads plainly (see the module's text)."""
    tags = set(re.findall(rf"\benum\s+([A-Za-z_]\w*)\s*(?:\{{[^{{}}]*\}}\s*)?"
                          rf"(?:const\s+)?{re.escape(name)}\b(?!\s*\()", code))
    if len(tags) != 1:
        return None
    tag = tags.pop()
    definitions = [body for found, body in _DEFINITION.findall(code) if found == tag]
    if len(definitions) != 1:
        return None
    enumerators = _enumerators(definitions[0])
    return Enum(tag, enumerators) if enumerators is not None else None
