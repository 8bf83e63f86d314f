"""The C family's host behaviour: its options, preprocessing, formatting and output filter."""

from __future__ import annotations

from pbotvm.host.request.cfamily import astyle, filters, preprocess
from pbotvm.host.request.language import Language, Shown, Source, registers
from pbotvm.host.request.statements.custom_options import CustomOptions, take_custom_options
from pbotvm.langspec import Behaviour, Diagnostics


@registers(Behaviour.CFAMILY)
class CFamily(Language):
    """Bare statements become a program with the dialect's prelude, the last statement's
    value is printed, astyle formats it; the compiler's and gdb's text is tidied (the
    original's _c_base.pm)."""

    def take_custom_options(self, code: str) -> tuple[str, CustomOptions]:
        return take_custom_options(code)

    def preprocess(self, code: str, custom: CustomOptions) -> Source:
        dialect = preprocess.Dialect(self.spec.prelude, self.spec.gdb,
                                     self.spec.block_comments_first)
        done = preprocess.preprocess(code, dialect, custom)
        return Source(astyle.pretty(done.code, self.spec.sourcefile), done.unterminated_directive)

    def postprocess_output(self, text: str, source: Source, shown: Shown) -> str:
        if self.spec.diagnostics is Diagnostics.TENDRA:
            return filters.filter_tendra_output(
                text, sourcefile=self.spec.sourcefile, execfile=self.spec.execfile,
                paste=shown.paste, unterminated_directive=source.unterminated_directive,
                channel=shown.channel)
        return filters.filter_c_output(
            text, sourcefile=self.spec.sourcefile, execfile=self.spec.execfile,
            paste=shown.paste, unterminated_directive=source.unterminated_directive)
