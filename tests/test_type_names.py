"""gdb's names for types, found by the compile (``cfamily.type_names``): the tables and what
keeps a statement out of them. The names themselves are checked against the original's
replies in tests/test_cfamily_values.py."""

from __future__ import annotations

import pytest

from pbotvm.guest.cfamily import type_names
from pbotvm.guest.cfamily.enums import Enum


@pytest.mark.parametrize(("code", "name"), [
    ("int x = 5;", "x"),
    ("long int l;", "l"),
    ("const char *s = 0;", "s"),
    ("unsigned char **p;", "p"),
    ("void f(unsigned short u) { }", "u"),
    ("int x = 1; { long x = 2; } return x;", "x"),  # ``return x`` declares nothing
])
def test_declared_with_basic_words(code: str, name: str) -> None:
    assert type_names.declared_plainly(code, name)


@pytest.mark.parametrize(("code", "name"), [
    ("size_t n = 5;", "n"),  # gdb: whatis says size_t
    ("int x; uint8_t y; { uint8_t x; }", "x"),  # once with a typedef is enough
    ("int x = 1, y = 2;", "y"),  # not right after the type words
    ("struct S s;", "s"),
    ("x = 5;", "x"),  # not declared here (a global of a header?)
])
def test_anything_else_is_left_to_gdb(code: str, name: str) -> None:
    assert not type_names.declared_plainly(code, name)


def test_gdb_spells_some_types_its_own_way() -> None:
    assert type_names.TYPES["long"] == "long" and type_names.TYPES["_Bool"] == "_Bool"
    bare = type_names.generic("x", bare=True)
    assert bare.startswith("_Generic(&(x), ") and '"const int"' in bare
    assert '"const int"' not in type_names.generic("x + 1", bare=False)  # an rvalue has none


def test_ptype_shows_an_enumerator_s_value_where_it_is_not_the_next() -> None:
    enum = Enum("color", (("RED", -2), ("GREEN", -1), ("BLUE", 7), ("X", 7)))
    assert type_names.enum_name(enum, full=False) == "enum color"
    assert type_names.enum_name(enum, full=True) == "enum color {RED = -2, GREEN, BLUE = 7, X = 7}"
