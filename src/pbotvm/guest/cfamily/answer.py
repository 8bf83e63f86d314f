"""The C family's answer text, by the original guest's rules (its _c_base module and
run_command), and ours for a gdb that failed, which the original answered as a program that
printed nothing."""

from __future__ import annotations

import signal

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


def gdb_failure(said: bytes, ended_by: int | None, status: int) -> str:
    """Why gdb ended before its driver did, on one line: its last words (``warning: …/
    gdb_driver.py: Permission denied``), else the signal that ended it, else its status."""
    lines = [line.strip() for line in said.decode("utf-8", "replace").splitlines()
             if line.strip()]
    if lines:
        return lines[-1]
    if ended_by is not None:
        return signal.strsignal(ended_by) or f"signal {ended_by}"
    return f"exit status {status}"


def gdb_failed(reason: str) -> str:
    """What the answer says, after the program's output, when gdb failed."""
    return f"[gdb failed: {reason}]\n"
