"""The edit sequences observed from the original (tests/data/edit_sequences.json, see its note).

Each sequence runs twice: purely, through the edit step, the store and the option parsing with
no process (the answer for code that runs is what the program printed, passed through the
"Same output." rule); and through the whole local stack (vm-client -> vm-server -> PTY guest).
Where the port differs on purpose, a step's "ours" holds what it answers instead and "why" the
fix; those values are inferred from the fix, the rest were observed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pbotvm.host.request import options
from pbotvm.host.request.edit.session import EditSession, shown_code
from pbotvm.host.request.edit.store import HistoryStore
from pbotvm.host.request.languages import find_language
from pbotvm.tokenizer import split_line
from tests.support.stack import LocalStack

TABLE = json.loads((Path(__file__).parent / "data" / "edit_sequences.json").read_text())
SEQUENCES: list[dict[str, Any]] = TABLE["sequences"]
IDS = [s["name"].replace(" ", "-") for s in SEQUENCES]


def expected(step: dict[str, Any]) -> dict[str, Any]:
    return {"reply": step["reply"], "ran": step["ran"], **step.get("ours", {})}


def words(code: str) -> str:
    """Code with its spacing as the original re-joined it (the port keeps code as written)."""
    return " ".join(split_line(code))


def fill(text: str, names: dict[str, str]) -> str:
    for placeholder, name in names.items():
        text = text.replace(placeholder, name)
    return text


def test_the_table_is_big_enough() -> None:
    assert len(SEQUENCES) >= 40
    observed = [st for s in SEQUENCES for st in s["steps"] if "ours" not in st]
    assert len(observed) >= 250


@pytest.mark.parametrize("sequence", SEQUENCES, ids=IDS)
def test_sequence_pure(sequence: dict[str, Any], tmp_path: Path) -> None:
    store = HistoryStore.open(tmp_path)
    names = {"{ch}": "#ch", "{other}": "#other", "{nick}": "nick"}
    now = 1_000_000.0
    for step in sequence["steps"]:
        want = expected(step)
        code, exec_options = options.strip_exec_options(fill(step["code"], names))
        lang = exec_options["lang"]
        session = EditSession(store, fill(step.get("channel", "{ch}"), names), lang)
        edit = session.edit(code)
        now += 1
        ran = None
        if edit.reply is not None:
            reply = edit.reply
        else:
            language = find_language(lang)
            assert language is not None
            parsed = options.parse_standard_options(edit.code, language.take_custom_options)
            if edit.only_show:
                reply = shown_code(parsed.code)
            else:
                ran = language.preprocess(parsed.code, parsed.custom).code
                printed = step.get("output", want["reply"]) + "\n"
                reply = session.answer(printed, factoid="factoid" in step, now=now)
        context = f"{step['code']!r} in {sequence['name']!r}"
        # vm-server strips the answer's trailing whitespace.
        assert reply.rstrip() == fill(want["reply"], names), context
        if want["ran"] is None:
            assert ran is None, context
        elif lang in ("sh", "bash"):
            assert ran is not None and words(ran) == words(fill(want["ran"], names)), context
        else:
            assert ran is not None, context  # C code reaches the guest through its own steps


@pytest.mark.root
@pytest.mark.parametrize("sequence", SEQUENCES, ids=IDS)
def test_sequence_through_the_stack(sequence: dict[str, Any], stack: LocalStack) -> None:
    n = SEQUENCES.index(sequence)
    names = {"{ch}": f"#seq{n}", "{other}": f"#seq{n}-other", "{nick}": f"seq{n}-nick"}
    for step in sequence["steps"]:
        fields = {"channel": fill(step.get("channel", "{ch}"), names)}
        if "factoid" in step:
            fields["factoid"] = step["factoid"]
        reply = stack.ask(fill(step["code"], names), **fields)
        assert reply == fill(expected(step)["reply"], names), (
            f"{step['code']!r} in {sequence['name']!r}")
