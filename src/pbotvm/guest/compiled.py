"""The compiled mode: the command line compiles, then the program runs (``./execfile``; Java,
``java``, names another). The compiler's words come before the program's answer."""

from __future__ import annotations

from pbotvm.guest.limits import compile_limits
from pbotvm.guest.modes import Job, Mode, registers
from pbotvm.guest.running import (
    output_text,
    result_text,
    split_arguments,
    stdin_bytes,
    to_result,
)
from pbotvm.langspec import RunMode
from pbotvm.protocol import Request, Result


def with_speedups(cmdline: str, speedups: str) -> str:
    """The command line with the language's speed-ups after its first word."""
    if not speedups:
        return cmdline
    program, _, rest = cmdline.partition(" ")
    return " ".join(word for word in (program, speedups, rest) if word)


@registers(RunMode.COMPILED)
class Compiled(Mode):
    def program(self, request: Request) -> str:
        """The command that runs the compiled program."""
        return f"./{request.execfile}"

    def run(self, job: Job) -> Result:
        request, settings, spec = job.request, job.settings, job.spec
        args = split_arguments(request.arguments)
        compiler = (with_speedups(job.cmdline, spec.compile_speedups) if spec and job.own
                    else job.cmdline)
        compiled = job.run(compiler, [], b"", compile_limits(settings.limits))
        diagnostics = output_text(compiled.stderr, compiled.stdout, settings.output_limit)
        if compiled.killed:  # said as a program's, so that a channel knows why
            return Result(text=result_text(diagnostics, 0, compiled.killed, bool(request.factoid)),
                          id=request.id, exit=compiled.status, killed=compiled.killed)
        if compiled.status:
            # As the original: a failed compile shows its diagnostics, without [Exit N].
            text = diagnostics or f"Exit {compiled.status}."
            return Result(text=text.rstrip("\n") + "\n", id=request.id, exit=compiled.status)
        outcome = job.run(self.program(request), args, stdin_bytes(request.input))
        result = to_result(request, outcome, settings.output_limit)
        if diagnostics.strip():
            result.text = f"[{diagnostics.strip()}]\n{result.text}"
        return result
