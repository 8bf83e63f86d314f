"""Rules of the source tree's layout (DEVELOPING.md, "Where things are"), as checks on the
code itself: a language's facts live only in ``langspec``, and each behaviour and run mode is
registered. (The import layers and cycles are `lint-imports`' contracts, in pyproject.toml.)"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pbotvm
from pbotvm.guest import modes, runner
from pbotvm.host.request import language, languages
from pbotvm.langspec import LANGUAGES, Behaviour, RunMode

PACKAGE = Path(pbotvm.__file__).parent
LANGSPEC = PACKAGE / "langspec"
NAMES = frozenset(name for spec in LANGUAGES for name in (spec.name, spec.display))
PROGRAMS = frozenset(spec.toolchain.program for spec in LANGUAGES)
PACKAGES = frozenset(package for spec in LANGUAGES
                     for package in (spec.toolchain.package, *spec.toolchain.also) if package)
# Modules where a word that is a language's name means a program or a Debian package: pch.py
# keys its table by compiler (clang++), distro.py by package (bash, perl, bc...).
MEANS_OTHER = {"pbotvm/guest/cfamily/pch.py": PROGRAMS, "pbotvm/provision/distro.py": PACKAGES}


def _sources() -> Iterator[Path]:
    yield from sorted(PACKAGE.rglob("*.py"))


def _literals(node: ast.AST) -> Iterator[ast.Constant]:
    """The string constants ``node`` is or holds (a tuple, list or set written out)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node
    elif isinstance(node, ast.Tuple | ast.List | ast.Set):
        for element in node.elts:
            yield from _literals(element)


def language_name_tests(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Where code tells languages apart by name: a language's name (or display name) compared
    with ``==``/``!=``/``in``/``is``, a key of a dict written out, or a ``case``."""
    for node in ast.walk(tree):
        candidates: list[ast.AST] = []
        if isinstance(node, ast.Compare):
            candidates = [node.left, *node.comparators]
        elif isinstance(node, ast.Dict):
            candidates = [key for key in node.keys if key is not None]
        elif isinstance(node, ast.MatchValue):
            candidates = [node.value]
        for candidate in candidates:
            for literal in _literals(candidate):
                if literal.value in NAMES:
                    yield literal.lineno, str(literal.value)


def test_language_names_are_tested_only_in_langspec() -> None:
    found: list[str] = []
    for path in _sources():
        if LANGSPEC in path.parents:
            continue
        where = str(path.relative_to(PACKAGE.parent))
        found.extend(f"{where}:{line}: {name!r}"
                     for line, name in language_name_tests(ast.parse(path.read_text()))
                     if name not in MEANS_OTHER.get(where, ()))
    assert not found, ("a language's facts belong in its langspec row, not in a test of its "
                       "name:\n" + "\n".join(found))


def test_the_check_sees_a_name_test() -> None:
    code = ('if spec.name == "c89": pass\n'
            'x = {"perl": 1}\n'
            'y = lang in ("clisp", "scheme")\n'
            'z = spec.display != "c++"\n'
            'match lang:\n    case "tendra": pass\n'
            'ok = char == "x" or words[0] == "deb"\n')
    assert [name for _, name in language_name_tests(ast.parse(code))] == [
        "c89", "perl", "clisp", "scheme", "c++", "tendra"]


def test_every_behaviour_and_run_mode_has_its_registration() -> None:
    assert languages.REGISTERING and runner.REGISTERING  # their import registers them
    assert set(language.BEHAVIOURS) == set(Behaviour)
    assert set(modes.MODES) == set(RunMode)
    for spec in LANGUAGES:  # the halves the C family and Java need go together
        assert (spec.run is RunMode.CFAMILY) == (spec.behaviour is Behaviour.CFAMILY), spec.name
        assert (spec.run is RunMode.JAVA) == (spec.behaviour is Behaviour.JAVA), spec.name
