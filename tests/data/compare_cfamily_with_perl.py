"""Compare our C-family and Java preprocessing with the original's Perl modules (not a test).

    .venv/bin/python tests/data/compare_cfamily_with_perl.py SEED COUNT [HOST_LIB]

Random inputs made of C-ish fragments go through the original's own host modules
(``Languages::<lang>``: custom options, compiler options, ``preprocess_code``, no astyle),
run by a small Perl driver, and through ours; every difference is printed. Our deliberate
fixes are undone for the comparison: 23 (the original dropped the code after the last
function) by patching ``given_program``, 25a (it wrapped a trailing ``whatis``) by leaving out
``whatis``. Needs perl with JSON::XS and the original's sources (HOST_LIB defaults to the copy
the helpers use).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from typing import Any

from pbotvm.host.request import java
from pbotvm.host.request.cfamily import preprocess as c_preprocess
from pbotvm.host.request.options import take_cmdline_options
from pbotvm.host.request.statements.custom_options import take_custom_options, take_java_options
from pbotvm.host.request.statements.functions import UnmatchedBrackets
from pbotvm.langspec import RunMode, find

HOST_LIB = "/tmp/pbotvm-original-0/src/applets/pbot-vm/host/lib"
# One child per input: the original prints "error: unmatched brackets" and exits.
DRIVER = r"""
use strict; use warnings; use JSON::XS;
my %loaded;
$| = 1;
while (my $line = <STDIN>) {
  my $req = decode_json($line);
  my $lang = $req->{lang};
  require "Languages/$lang.pm" unless $loaded{$lang}++;
  my $pid = open(my $fh, '-|') // die "fork: $!";
  if (!$pid) {
    my $l = "Languages::$lang"->new(code => $req->{code}, nick => 'n', channel => '#c',
                                    lang => $lang);
    open $l->{logh}, '>', '/dev/null';
    $l->process_custom_options; $l->process_cmdline_options; $l->preprocess_code;
    print encode_json({code => $l->{code}, warn => ($l->{warn_unterminated_define} // 0) + 0});
    exit 0;
  }
  local $/; my $out = <$fh>; close $fh;
  $out = encode_json({error => $out}) unless $out =~ /^\{"/;
  print $out, "\n";
}
"""
FRAGMENTS = [
    "int", "f", "main", "x", "(", ")", "{", "}", ";", " ", " ", " ", "\\n", "\n", '"', "'", "\\",
    "/", "*", "//", "/*", "*/", "#", "#include <stdio.h>", '#include "a.h"', "#define X",
    "include", "<%", "%>", "??<", "??>", "=", "==", "+=", "1", "print", "sizeof", "return",
    "for", "while", "if", "else", "switch", 'printf("%d\\n", x)', "|n", "using", ",",
    " -nomain ", " -noheaders ", " -include a.h ", "??", "char", "*p", ":", "void", "(main)",
    "\t", "a b(c) {", "int g(void) { return 1; }", "} ", "};", "{ ", "\r", "é",
]
LANGS = ["c2x", "c89", "tendra", "cpp", "clang89", "java"]
JAVA_PRELUDE_2023 = "import java.*;\n\n"


def _ours(lang: str, code: str) -> dict[str, Any]:
    try:
        if lang == "java":
            code, custom = take_java_options(code)
            code, _ = take_cmdline_options(code)
            return {"code": java.preprocess(code, JAVA_PRELUDE_2023, custom), "warn": 0}
        language = find(lang)
        assert language is not None and language.run is RunMode.CFAMILY
        code, custom = take_custom_options(code)
        code, _ = take_cmdline_options(code)
        dialect = c_preprocess.Dialect(language.prelude, language.gdb,
                                       language.block_comments_first)
        result = c_preprocess.preprocess(code, dialect, custom)
        return {"code": result.code, "warn": int(result.unterminated_directive)}
    except UnmatchedBrackets as error:
        return {"error": f"{error}\n"}


def _cases(seed: int, count: int) -> list[tuple[str, str]]:
    rnd = random.Random(seed)
    cases: list[tuple[str, str]] = []
    while len(cases) < count:
        code = "".join(rnd.choice(FRAGMENTS) for _ in range(rnd.randint(1, 60)))
        # Left out: whatis (fix 25a), leading '-' words and a final lone backslash (option
        # handling, options.py's business).
        if "whatis" in code or code.lstrip().startswith("-"):
            continue
        if (len(code) - len(code.rstrip("\\"))) % 2:
            continue
        cases.append((rnd.choice(LANGS), code))
    return cases


def main() -> None:
    seed, count = int(sys.argv[1]), int(sys.argv[2])
    host_lib = sys.argv[3] if len(sys.argv) > 3 else HOST_LIB
    # Undo fix 23 (the original drops the code after the last function).
    c_preprocess.given_program = java.given_program = lambda header, functions, rest: (
        f"{header}\n{functions}\n")
    cases = _cases(seed, count)
    requests = "".join(json.dumps({"lang": lang, "code": code}) + "\n" for lang, code in cases)
    perl = subprocess.run(["perl", "-I", host_lib, "-e", DRIVER], input=requests.encode(),
                          capture_output=True, check=True)
    theirs = [json.loads(line) for line in perl.stdout.decode().splitlines()]
    assert len(theirs) == len(cases), perl.stderr.decode()[-2000:]
    differences = 0
    for (lang, code), original in zip(cases, theirs, strict=True):
        if lang == "java" and "error" not in original:
            original["warn"] = 0  # java.pm resets the flag but has no warning
        if (ours := _ours(lang, code)) != original:
            differences += 1
            print(f"{lang} {code!r}\n  original: {original!r}\n  ours:     {ours!r}")
    print(f"{count} cases, {differences} differences")


if __name__ == "__main__":
    main()
