"""The C family's answer text, by the original guest's rules (its _c_base module and
run_command)."""

from __future__ import annotations

from pbotvm.tokenizer import PERL_SPACE

SUCCESS = "Success (no output)."


def diagnostics_prefix(diagnostics: str) -> str:
    """A successful compile's diagnostics, trimmed, in brackets, on a line of their own."""
    return f"[{diagnostics.strip(PERL_SPACE)}]\n" if diagnostics else ""


def answer(prefix: str, result: str, status: int, factoid: bool) -> str:
    """``prefix`` (the diagnostics) and ``result`` (what the program said; empty when it said
    nothing), ``[Exit N]`` for a failing status, and a final newline."""
    if not result:
        if factoid:
            text = ""
        else:
            done = SUCCESS if status == 0 else f"Exit {status}."
            text = f"{prefix}\n{done}\n" if prefix else f"{done}\n"
    elif status:
        text = f"{prefix}{result} [Exit {status}]"
    else:
        text = prefix + result
    return text if text.endswith("\n") else text + "\n"
