"""Reading an enum variable's enumerators from the code (``cfamily.enums``): only where the
reading is plain; anything else is left to gdb."""

from __future__ import annotations

import pytest

from pbotvm.guest.cfamily.enums import Enum, enum_of


@pytest.mark.parametrize(("code", "enumerators"), [
    ("enum e { A, B } v = B;", (("A", 0), ("B", 1))),
    ("enum e { A, B }; enum e v = A;", (("A", 0), ("B", 1))),
    ("enum color { RED = -2, GREEN, BLUE = 7, } c;", (("RED", -2), ("GREEN", -1), ("BLUE", 7))),
    ("enum e {A=1,B=1}; void f(enum e v) {}", (("A", 1), ("B", 1))),
    ("enum e { A }; const enum e v = A;", (("A", 0),)),
])
def test_a_plain_enum_is_read(code: str, enumerators: tuple[tuple[str, int], ...]) -> None:
    name = "c" if " c;" in code else "v"
    assert enum_of(code, name) == Enum(code.split()[1], enumerators)


@pytest.mark.parametrize("code", [
    "typedef enum { A, B } E; E v = B;",  # no tag
    "enum { A, B } v = B;",
    "enum e { A = 1 << 1, B } v;",  # an expression
    "enum e { A = X, B } v;",  # a macro
    "enum e { A = 010 } v;",  # octal
    "enum e { A = 4294967296 } v;",  # past int
    "enum e { A } v; enum f { B } v;",  # two enums for one name
    "enum e { A } x; void g(void) { enum e { B } y; } enum e v;",  # the tag defined twice
    "enum e { A, B } u, v;",  # not right after enum TAG
    "int v;",
    "enum e { A, B } v(void);",  # a function
])
def test_anything_else_is_not(code: str) -> None:
    assert enum_of(code, "v") is None


def test_the_first_enumerator_of_a_value_names_it() -> None:
    enum = Enum("e", (("A", 1), ("B", 1), ("C", 2)))
    assert (enum.name_of(1), enum.name_of(2), enum.name_of(3)) == ("A", "C", None)
