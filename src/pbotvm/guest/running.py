"""What every run mode shares (``modes``): the user's environment, a command line with its
arguments quoted, and the result text by the original's rules (run_command's
``Success (no output).``/``[Exit N]``, _default.pm's stderr, a space, then stdout)."""

from __future__ import annotations

import pwd

from pbotvm.guest import shell_shim
from pbotvm.guest.sandbox import CPU_LIMIT, MEMORY_LIMIT, WALL_LIMIT, Capture, Outcome
from pbotvm.protocol import TIMED_OUT, Request, Result
from pbotvm.text import cap_output, decode_text, truncation_marker
from pbotvm.tokenizer import split_line

PATH = f"{shell_shim.SHIM_DIR}:/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"
CPU_KILLED = "[Killed: CPU time limit exceeded]"
MEMORY_KILLED = "[Killed: memory limit exceeded]"
KILLED_TEXTS = {CPU_LIMIT: CPU_KILLED, MEMORY_LIMIT: MEMORY_KILLED}
# Room kept below the output limit for the truncation line and the status suffix, so the
# whole text fits the limit and the host has no reason to cut it again.
_RESERVE = 128


def quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\"'\"'") + "'"


def split_arguments(arguments: str) -> list[str]:
    """The program's arguments, split by the original guest's rules."""
    return split_line(arguments, strip_quotes=True, preserve_escapes=False)


def command_line(cmdline: str, args: list[str]) -> str:
    """The command plus each argument single-quoted."""
    return " ".join([cmdline, *map(quote, args)])


def stdin_bytes(text: str | None) -> bytes:
    # The original fed input through a bash here-string, which appends a newline.
    return utf8(text + "\n") if text else b""


def utf8(text: str) -> bytes:
    # JSON may carry lone surrogates, which UTF-8 cannot encode.
    return text.encode("utf-8", "replace")


def user_environment(user: pwd.struct_passwd) -> dict[str, str]:
    # A fresh environment (no DEBUGINFOD_URLS: gdb must not try the network). The original's
    # set-up exported ASAN_OPTIONS=detect_leaks=0 for root's shell, which its programs inherited:
    # LeakSanitizer's report would otherwise bury a snippet's output.
    return {"USER": user.pw_name, "LOGNAME": user.pw_name, "HOME": user.pw_dir,
            "PATH": PATH, "LANG": "C.UTF-8", "ASAN_OPTIONS": "detect_leaks=0"}


def output_text(stderr: Capture, stdout: Capture, limit: int) -> str:
    """stderr, a space if there was any, then stdout (not interleaved, as the original),
    cut to the limit with a line saying how much was left out."""
    separator = b" " if stderr.size else b""
    raw = stderr.data + separator + stdout.data
    total = stderr.size + len(separator) + stdout.size
    kept, _ = cap_output(raw, max(limit - _RESERVE, 0))
    text = decode_text(kept)
    cut = total - len(kept)
    if cut:
        text = text.rstrip("\n") + "\n" + truncation_marker(cut)
    return text


def result_text(output: str, status: int, killed: str | None, factoid: bool) -> str:
    """The original's rules; a limit that stopped the program is said where the original
    showed it (the time-out as leading stderr, the CPU kill where ``[Exit 137]`` was; the
    memory kill, which the original did not have, as the CPU kill)."""
    if killed == WALL_LIMIT:
        text = f"{TIMED_OUT} {output}" if output else TIMED_OUT
    elif killed in KILLED_TEXTS:
        said = KILLED_TEXTS[killed]
        text = f"{output} {said}" if output else said
    elif not output and factoid:
        text = ""
    elif not output:
        text = "Success (no output)." if status == 0 else f"Exit {status}."
    elif status:
        text = f"{output} [Exit {status}]"
    else:
        text = output
    return text if text.endswith("\n") else text + "\n"


def to_result(request: Request, outcome: Outcome, limit: int) -> Result:
    output = output_text(outcome.stderr, outcome.stdout, limit)
    text = result_text(output, outcome.status, outcome.killed, bool(request.factoid))
    return Result(text=text, id=request.id, exit=outcome.status, killed=outcome.killed)
