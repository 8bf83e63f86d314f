"""The C family's and TenDRA's output filters against the original.

Each row of data/cfamily_filters.json is raw guest output and what the original made of it.
Rows with source "observed" were asked of the running original (its log gives the raw guest
output and the text before vm-server; ``reply`` is what the client received). Rows with source
"constructed" cover rules the test harness could not show; their ``expected_by`` says where
the expected text comes from (the original's filter code run in Perl, or a deliberate fix,
with the original's answer kept as ``original``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pbotvm.host.request.cfamily.filters import filter_c_output, filter_tendra_output
from pbotvm.host.request.output import postprocess

ROWS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "cfamily_filters.json").read_text(encoding="utf-8"))["rows"]


def answer(row: dict[str, Any]) -> str:
    """What the host makes of the raw guest output: the base post-processing, then the
    language's filters (as the pipeline runs them)."""
    text = postprocess(row["raw"])
    flags = {"sourcefile": row["sourcefile"], "execfile": row["execfile"], "paste": row["paste"],
             "unterminated_directive": row["unterminated_directive"]}
    if row["language"] == "tendra":
        return filter_tendra_output(text, channel=row["channel"], **flags)
    return filter_c_output(text, **flags)


@pytest.mark.parametrize("row", ROWS, ids=[row["name"] for row in ROWS])
def test_answer_is_the_originals(row: dict[str, Any]) -> None:
    assert answer(row) == row["expected"]


REPLIED = [row for row in ROWS if row.get("reply") is not None]


@pytest.mark.parametrize("row", REPLIED, ids=[row["name"] for row in REPLIED])
def test_reply_after_vm_server_is_the_originals(row: dict[str, Any]) -> None:
    # vm-server strips trailing white space and adds one newline; the reply the client got
    # is compared after the same, so this also holds where the exact text above would not.
    assert answer(row).rstrip() + "\n" == row["reply"]


def test_the_table_is_mostly_observed() -> None:
    observed = [row for row in ROWS if row["source"] == "observed"]
    assert len(observed) >= 40
    assert all(row["expected"] != row.get("original") for row in ROWS if "original" in row)


def flags(paste: bool = False) -> dict[str, Any]:
    return {"sourcefile": "prog.c", "execfile": "prog", "paste": paste,
            "unterminated_directive": False}


@pytest.mark.parametrize(("text", "expected"), [
    ("[ \twarning: x]", "[warning: x]"),
    # \x1f is white space to Python's \s, not to Perl's (checked with perl, unicode_strings);
    # the base post-processing lets it through, so the filters must not eat it.
    ("[\x1fwarning: x]", "[\x1fwarning: x]"),
])
def test_white_space_is_perls(text: str, expected: str) -> None:
    assert filter_c_output(text, **flags()) == expected


@pytest.mark.parametrize("directory", ["/home/vm/run-k2x9_a7q/", "/home/compiler/"])
def test_work_directory_goes(directory: str) -> None:
    text = f"{directory}prog.c:41: undefined reference to 'foo'"
    assert filter_c_output(text, **flags()) == " undefined reference to 'foo'"


def test_other_home_directories_stay() -> None:
    # The original's own guest layout (/home/vm/<pid>/) is not ours, and it leaked it too.
    text = "see /home/vm/12345/ and /home/vm/run-short/"
    assert filter_c_output(text, **flags()) == text
