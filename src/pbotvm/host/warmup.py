"""Warming a new guest before its snapshot: each of its image's languages once, so that the
snapshot holds warm toolchains and each C dialect's precompiled prelude, then C code that gdb
evaluates. Every backend's ``up`` takes ``for_image(image, say)`` as its warm step; a warm-up
answer that shows a broken guest stops it (``WarmUpFailed``), before any snapshot is made.

It builds its requests as the pipeline builds a channel's (``request.vmexec``), which is why
it lives above both the pipeline and the machines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from pbotvm import langspec
from pbotvm.config import Machine
from pbotvm.host.machines.guest import Warm, WarmUpFailed
from pbotvm.host.machines.transport import TransportChoice, send
from pbotvm.host.request import options
from pbotvm.host.request.languages import find_language
from pbotvm.host.request.vmexec import make_request
from pbotvm.image.build import Image
from pbotvm.protocol import Request
from pbotvm.provision import profiles

# A warm-up request may precompile a prelude first: prelude.hpp takes g++ 3 s natively, and
# TCG is ten times slower or more.
WARMUP_TIMEOUT = 300.0
# C code gdb evaluates, as it comes from a channel (already as astyle writes it), and what
# its answer says; every image has gcc and gdb. (The program itself prints a scalar's value,
# `1 + 1` or `print(x)`: that would not start gdb.)
GDB_WARMUP = ("c2x", 'gdb("print 6 * 7");', "6 * 7 = 42")
GDB_WARMUP_ID = "warmup-gdb"
_BROKEN = ("[Fatal error:", "[gdb failed:")  # a guest that cannot answer as it should


def warmup_requests() -> list[Request]:
    """One hello-world per toolchain (the original's doc advises warming up before the
    snapshot), and one per C dialect: each has its own precompiled prelude, which is then in
    the snapshot. A toolchain the guest lacks costs it no process: it answers at once. Last,
    C code that gdb evaluates (``GDB_WARMUP``)."""
    requests: dict[str, Request] = {}
    for spec in langspec.LANGUAGES:
        key = spec.name if spec.run is langspec.RunMode.CFAMILY else spec.toolchain.program
        if key not in requests and (request := _warmup_request(spec.name, spec.hello,
                                                               f"warmup-{spec.name}")):
            requests[key] = request
    lang, code, _ = GDB_WARMUP
    gdb = _warmup_request(lang, code, GDB_WARMUP_ID)
    return [*requests.values(), *([gdb] if gdb else [])]


def _warmup_request(lang: str, code: str, request_id: str) -> Request | None:
    language = find_language(lang)
    if language is None:
        return None
    parsed = options.parse_standard_options(code, language.take_custom_options)
    source = language.preprocess(parsed.code, parsed.custom)
    return replace(make_request(language, lang, parsed, source, stdin=""), id=request_id)


def warmup_problem(request: Request, text: str) -> str | None:
    """What a warm-up answer says is wrong with the guest (one line), or None: the guest could
    not run the request, gdb did not answer (every C answer that needs it would be wrong:
    guest-server's user cannot read its driver, say), or a hello did not say ``hello`` (a
    language of the image that answers nothing else: a runtime missing, a limit met)."""
    said = text.strip()
    lang, code, expected = GDB_WARMUP
    if request.id == GDB_WARMUP_ID:
        if expected not in said:
            return f"warm-up {lang} `{code}` answered {_cut(said)!r}, not {expected!r}"
    elif said.rsplit("\n", 1)[-1] != "hello":
        # clang's C89 and C99 warn first about the generated main's unused parameters.
        return f"warm-up {request.lang} hello answered {_cut(said)!r}"
    if any(mark in said for mark in _BROKEN):
        return f"warm-up {request.lang} request answered {_cut(said)!r}"
    return None


def _cut(said: str, keep: int = 300) -> str:
    """An answer's end, enough to say what failed (a link error names the file it missed)."""
    return said if len(said) <= keep else "…" + said[-keep:]


def warmup_failed(problems: Sequence[str]) -> str:
    """Why the guest is not snapshotted: a channel would get these answers."""
    return (f"not snapshotting a guest whose warm-up failed for {len(problems)} of its "
            "languages:\n  " + "\n  ".join(problems))


def image_warmups(languages: Sequence[langspec.LangSpec]) -> list[Request]:
    """The warm-up requests of the image's languages: another's would only answer that it
    is not installed."""
    names = {spec.name for spec in languages}
    return [request for request in warmup_requests() if request.lang in names]


def warmup_line(profile: str, languages: Sequence[langspec.LangSpec]) -> str:
    """Which languages the image has, said once, where each other language's warm-up said
    that it was not installed."""
    others = len(langspec.LANGUAGES) - len(languages)
    return (f"warming up the {profile} image's languages: "
            f"{', '.join(spec.name for spec in languages)}"
            + (f" (the other {others} are not in it)" if others else ""))


def for_image(image: Image, say: Callable[[str], None]) -> Warm:
    """The warm step of a guest booted from ``image``: its languages' requests, in turn."""
    manifest = image.manifest()
    languages = profiles.languages(manifest["packages"])

    async def warm(machine: Machine) -> None:
        say(warmup_line(manifest["profile"], languages))
        transport = TransportChoice(machine.name)
        problems = []
        for request in image_warmups(languages):
            try:
                text = await send(machine, request, WARMUP_TIMEOUT, transport=transport)
            except (TimeoutError, OSError) as e:
                raise WarmUpFailed(f"warm-up {request.lang} request failed "
                                   f"({e or 'timed out'})") from None
            # The others still run: the operator learns at once of every language to fix.
            if (problem := warmup_problem(request, text)) is not None:
                say(problem)
                problems.append(problem)
        if problems:
            raise WarmUpFailed(warmup_failed(problems))

    return warm
