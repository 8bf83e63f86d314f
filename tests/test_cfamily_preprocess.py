"""The C family's and Java's preprocessing against the code the original sent to its guest.

tests/data/cfamily_preprocess.json was observed from the original (620ebe0e, run as
/work/tools/orig) by tests/data/record_cfamily_preprocess.py: per row the user's text, the
code as the original's preprocessing received it (``tokenized``), the code it sent after
astyle (``expected``) and its final reply. Rows with ``fix`` differ on purpose ("23": the
original dropped the code after the last function; "25a": it wrapped a trailing ``whatis``,
which then hung until gdb's time-out); their code is in cfamily_preprocess_fixed.json, which
is inferred (our output, checked by hand against the original's rules), not observed.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from pbotvm.host.request import java
from pbotvm.host.request.cfamily.astyle import pretty
from pbotvm.host.request.cfamily.preprocess import Dialect, preprocess
from pbotvm.host.request.options import take_cmdline_options
from pbotvm.host.request.statements.custom_options import (
    CustomOptions,
    take_custom_options,
    take_java_options,
)
from pbotvm.host.request.statements.functions import UnmatchedBrackets
from pbotvm.langspec import RunMode, find

DATA = Path(__file__).parent / "data"
ROWS: list[dict[str, Any]] = json.loads((DATA / "cfamily_preprocess.json").read_text())
FIXED: dict[str, str] = json.loads((DATA / "cfamily_preprocess_fixed.json").read_text())
JAVA_PRELUDE_2023 = "import java.*;\n\n"  # the original's; ours is HEAD's (languages.py)
UNTERMINATED_WARNING = "[warning: preprocessor directive not terminated by \\n"
# The 2023 option parser split words after a closing quote: `"hi";` reached the
# preprocessing as `"hi" ;`, and astyle keeps that space.
_SPLIT_AFTER_QUOTE = re.compile(r"""(["']) ([;)])""")

needs_astyle = pytest.mark.skipif(shutil.which("astyle") is None,
                                  reason="astyle is not installed: C code would go unformatted")


def _dialect(name: str) -> Dialect:
    spec = find(name)
    assert spec is not None and spec.run is RunMode.CFAMILY
    return Dialect(spec.prelude, spec.gdb, spec.block_comments_first)


def _custom(row: dict[str, Any]) -> CustomOptions:
    take = take_java_options if row["lang"] == "java" else take_custom_options
    return take(row["code"])[1]


def _ours(row: dict[str, Any], code: str) -> str:
    custom = _custom(row)
    if row["lang"] == "java":
        return java.preprocess(code, JAVA_PRELUDE_2023, custom)
    spec = find(row["lang"])
    assert spec is not None
    return pretty(preprocess(code, _dialect(row["lang"]), custom).code, spec.sourcefile)


def _want(row: dict[str, Any]) -> str:
    return FIXED[row["name"]] if row["fix"] else row["expected"]


def _rows(*, sent: bool) -> list[Any]:
    return [pytest.param(row, id=row["name"],
                         marks=[] if row["lang"] == "java" else [needs_astyle])
            for row in ROWS if (row["expected"] is not None) == sent]


def test_the_table_covers_what_the_task_asks() -> None:
    c_rows = [row for row in ROWS if row["lang"] != "java"]
    assert len(c_rows) >= 45
    assert len(ROWS) - len(c_rows) >= 8
    assert {"c89", "c99", "c11", "clang89", "cpp"} <= {row["lang"] for row in ROWS}
    assert set(FIXED) == {row["name"] for row in ROWS if row["fix"]}


@pytest.mark.parametrize("row", _rows(sent=True))
def test_same_code_as_the_original_from_the_same_input(row: dict[str, Any]) -> None:
    assert _ours(row, row["tokenized"]) == _want(row)


@pytest.mark.parametrize("row", [row for row in ROWS if row["fix"]], ids=lambda row: row["name"])
def test_the_deliberate_fixes_change_the_code(row: dict[str, Any]) -> None:
    assert FIXED[row["name"]] != row["expected"]


@pytest.mark.parametrize("row", _rows(sent=True))
def test_from_our_option_parsing_only_the_2023_quote_split_differs(row: dict[str, Any]) -> None:
    take = take_java_options if row["lang"] == "java" else take_custom_options
    code, _ = take_cmdline_options(take(row["code"])[0])
    assert _ours(row, code) == _SPLIT_AFTER_QUOTE.sub(r"\1\2", _want(row))


@pytest.mark.parametrize("row", _rows(sent=False))
def test_unmatched_brackets_send_nothing(row: dict[str, Any]) -> None:
    with pytest.raises(UnmatchedBrackets) as raised:
        _ours(row, row["tokenized"])
    assert f"{raised.value}\n" == row["reply"]


@pytest.mark.parametrize("row", [row for row in ROWS
                                 if row["lang"] != "java" and row["expected"] is not None],
                         ids=lambda row: row["name"])
def test_unterminated_directive_flag_matches_the_warning(row: dict[str, Any]) -> None:
    result = preprocess(row["tokenized"], _dialect(row["lang"]), _custom(row))
    assert result.unterminated_directive == row["reply"].startswith(UNTERMINATED_WARNING)


# --- astyle --------------------------------------------------------------------------------

@needs_astyle
def test_pretty_formats_k_and_r_with_padded_operators_and_broken_blocks() -> None:
    code = "int main(int argc, char *argv[]) {\nint x=1+2;\nif(x){return x;}\nreturn 0;\n}"
    assert pretty(code, "prog.c") == (
        "int main(int argc, char *argv[])\n{\n    int x = 1 + 2;\n\n"
        "    if (x) {\n        return x;\n    }\n\n    return 0;\n}")


@needs_astyle
def test_pretty_does_not_depend_on_the_callers_pwd(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    monkeypatch.setenv("PWD", str(tmp_path / "elsewhere"))
    monkeypatch.chdir(tmp_path)
    assert pretty("int x=1;", "prog.c") == "int x = 1;"
    assert list(tmp_path.iterdir()) == []  # nothing written where the caller is


@needs_astyle
def test_pretty_keeps_the_code_when_astyle_fails() -> None:
    # astyle gives up on an unterminated comment (row block_comment_before_function).
    code = "/*\nint f(void) { return 8;\n }"
    assert pretty(code, "prog.c") == code


def test_pretty_keeps_the_code_without_astyle(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert pretty("int x=1;", "prog.c") == "int x=1;"
