"""The script mode: the command line is the program (the interpreters, and a language the
table does not know, as the original's ``_default`` module ran it)."""

from __future__ import annotations

from pbotvm.guest.modes import Job, Mode, registers
from pbotvm.guest.running import split_arguments, stdin_bytes, to_result
from pbotvm.langspec import RunMode
from pbotvm.protocol import Result


@registers(RunMode.SCRIPT)
class Script(Mode):
    def run(self, job: Job) -> Result:
        outcome = job.run(job.cmdline, split_arguments(job.request.arguments),
                          stdin_bytes(job.request.input))
        return to_result(job.request, outcome, job.settings.output_limit)
