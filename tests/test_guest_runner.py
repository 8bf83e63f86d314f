"""The guest's execution of one request, with real processes (as root, dropping to `vm`).

Requests go through ``supervisor.Supervisors`` as in the server: a forked root supervisor runs
them, so the test process itself never becomes a subreaper.
"""

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pbotvm.guest import clock, compiled, runner, sandbox, supervisor
from pbotvm.guest.limits import Limits
from pbotvm.guest.runner import RunSettings
from pbotvm.guest.running import (
    CPU_KILLED,
    PATH,
    command_line,
    output_text,
    result_text,
    split_arguments,
    user_environment,
)
from pbotvm.guest.sandbox import CPU_LIMIT, WALL_LIMIT, Capture
from pbotvm.procs import running as alive
from pbotvm.protocol import Request, Result
from tests.conftest import DAEMON, DAEMON_SECONDS, processes_running

LANGS = {
    "sh": ("prog.sh", "sh prog.sh"),
    "bash": ("prog.sh", "bash prog.sh"),
    "python3": ("prog.py", "python3 -u prog.py"),
    "perl": ("prog.pl", "perl -w prog.pl"),
}


def request(code: str, lang: str = "sh", **kw: object) -> Request:
    source, cmdline = LANGS.get(lang, LANGS["sh"])
    fields: dict = {"sourcefile": source, "execfile": source, "cmdline": cmdline, **kw}
    return Request(lang=lang, code=code, **fields)


async def run_once(req: Request, settings: RunSettings | None = None) -> Result:
    supervisors = supervisor.Supervisors(settings or RunSettings())
    try:
        return await supervisors.run(req)
    finally:
        await supervisors.aclose()


def run(req: Request, settings: RunSettings | None = None) -> Result:
    return asyncio.run(run_once(req, settings))


def text(code: str, lang: str = "sh", **kw: object) -> str:
    return run(request(code, lang, **kw)).text


@pytest.mark.root
@pytest.mark.parametrize(("lang", "code"), [
    ("sh", "echo hello"),
    ("bash", "a=(x hello); echo ${a[1]}"),
    ("python3", "print('hello')"),
    ("perl", 'print "hello\\n";'),
])
def test_languages(lang: str, code: str) -> None:
    assert text(code, lang) == "hello\n"


@pytest.mark.root
def test_result_echoes_the_id_and_reports_the_exit() -> None:
    result = run(request("exit 3", id="r-42"))
    assert (result.id, result.exit, result.killed) == ("r-42", 3, None)


@pytest.mark.root
def test_stdin_gets_a_trailing_newline() -> None:
    assert text("import sys; print(repr(sys.stdin.read()))", "python3",
                input="a b") == "'a b\\n'\n"


@pytest.mark.root
def test_no_input_means_end_of_file() -> None:
    assert text("cat; echo done") == "done\n"
    assert text("cat", input=None) == "Success (no output).\n"


@pytest.mark.root
def test_arguments_are_split_and_quoted() -> None:
    code = 'for a; do echo "[$a]"; done'
    args = "\"a b\" 'c' it's $HOME `id` d\\ e"
    assert text(code, "bash", arguments=args) == "[a b]\n[c]\n[it's]\n[$HOME]\n[`id`]\n[d e]\n"


@pytest.mark.root
def test_stderr_comes_first_then_a_space_then_stdout() -> None:
    assert text("echo out; echo err >&2") == "err\n out\n"


@pytest.mark.root
def test_output_rules() -> None:
    assert text("true") == "Success (no output).\n"
    assert text("exit 4") == "Exit 4.\n"
    assert text("echo x; exit 5") == "x\n [Exit 5]\n"
    assert text("printf x") == "x\n"


@pytest.mark.root
def test_factoid_keeps_empty_output_empty() -> None:
    assert text("true", factoid="f") == "\n"
    assert text("exit 2", factoid="f") == "\n"
    assert text("echo hi", factoid="f") == "hi\n"


@pytest.mark.root
def test_killed_by_a_signal_reports_128_plus_the_signal() -> None:
    result = run(request("kill -TERM $$"))
    assert (result.text, result.exit, result.killed) == ("Exit 143.\n", 143, None)


@pytest.mark.root
def test_invalid_utf8_is_shown_as_escapes() -> None:
    assert text("printf 'a\\377\\376b \\342\\202\\254'") == "a\\xFF\\xFEb \u20ac\n"


@pytest.mark.root
def test_output_is_capped_with_a_marker() -> None:
    settings = RunSettings(output_limit=1024 * 1024)
    result = run(request("head -c 5000000 /dev/zero | tr '\\0' a"), settings)
    body, marker = result.text.rstrip("\n").rsplit("\n", 1)
    assert set(body) == {"a"} and len(result.text.encode()) <= settings.output_limit
    assert marker == f"[... output truncated: {5_000_000 - len(body)} more bytes]"


def test_capping_counts_stderr_the_space_and_stdout() -> None:
    out = output_text(Capture(b"e" * 10, 10), Capture(b"o" * 100, 500), limit=128 + 20)
    assert out == "e" * 10 + " " + "o" * 9 + "\n[... output truncated: 491 more bytes]"
    assert output_text(Capture(b"", 0), Capture(b"\xe2\x82\xac", 3), 1024) == "\u20ac"


def test_result_text_rules() -> None:
    assert result_text("", 0, None, factoid=False) == "Success (no output).\n"
    assert result_text("", 1, None, factoid=False) == "Exit 1.\n"
    assert result_text("", 1, None, factoid=True) == "\n"
    assert result_text("x", 1, None, factoid=False) == "x [Exit 1]\n"
    assert result_text("x", 137, CPU_LIMIT, factoid=False) == f"x {CPU_KILLED}\n"
    assert result_text("", 137, WALL_LIMIT, factoid=True) == "[Timed-out]\n"
    assert result_text("part\n", 137, WALL_LIMIT, factoid=False) == "[Timed-out] part\n"


def test_command_line_quotes_every_argument() -> None:
    assert command_line("sh prog.sh", []) == "sh prog.sh"
    args = split_arguments("a 'b c' d'e")
    assert command_line("sh prog.sh", args) == "sh prog.sh 'a' 'b c' 'd'\"'\"'e'"


@pytest.mark.root
def test_sh_programs_get_bash_as_on_the_reference_guests() -> None:
    # Debian's /bin/sh is dash, which answers the first with a syntax error.
    assert text("echo $((2**10)); [[ -n x ]] && echo ok") == "1024\nok\n"
    assert text("sh -c 'echo $((3**2))'", "bash") == "9\n"


@pytest.mark.root
def test_runs_with_bash_although_sh_may_be_dash() -> None:
    assert text("", cmdline='echo "${BASH_VERSION:+bash}"') == "bash\n"


@pytest.mark.root
def test_runs_as_the_unprivileged_user_with_its_environment() -> None:
    vm = pwd.getpwnam("vm")
    assert text("id -u; id -G; echo $USER $LOGNAME $HOME $LANG $ASAN_OPTIONS "
                "${DEBUGINFOD_URLS-unset}") == (
        f"{vm.pw_uid}\n{vm.pw_gid}\nvm vm {vm.pw_dir} C.UTF-8 detect_leaks=0 unset\n")


@pytest.mark.root
def test_work_directory_is_fresh_and_removed() -> None:
    first = text("pwd; stat -c '%U %a' .; ls").split("\n")
    second = text("pwd").strip()
    vm = pwd.getpwnam("vm")
    assert Path(first[0]).parent == Path(vm.pw_dir) and first[1:3] == ["vm 755", "prog.sh"]
    assert first[0] != second
    assert not Path(first[0]).exists() and not Path(second).exists()


@pytest.mark.root
def test_file_size_limit() -> None:
    out = text("head -c 3000000 /dev/zero > f; stat -c %s f")
    # sh is bash, as on the original's reference guests: bash reports the signal.
    assert re.fullmatch(r"prog\.sh: line 1: +\d+ File size limit exceeded *head -c 3000000 "
                        r"/dev/zero > f\n 2048000\n", out)


@pytest.mark.root
def test_wall_time_limit() -> None:
    settings = RunSettings(limits=Limits(wall_seconds=1.5))
    start = time.monotonic()
    result = run(request("echo partial; sleep 30"), settings)
    assert 1.5 <= time.monotonic() - start < 4
    assert (result.text, result.killed) == ("[Timed-out] partial\n", WALL_LIMIT)


@pytest.mark.root
@pytest.mark.slow
def test_cpu_time_limit() -> None:
    start = time.monotonic()
    result = run(request("while :; do :; done"))
    assert 7 < time.monotonic() - start < 20
    assert (result.text, result.exit, result.killed) == (f"{CPU_KILLED}\n", 137, CPU_LIMIT)


@pytest.mark.root
def test_a_compiler_gets_the_compile_limits_and_its_program_the_programs() -> None:
    """javac and ghc took more than a program's 8 s of CPU in a TCG guest: a compiler of
    any language gets the C family's 60 s (and 64 MiB files); what it built, the usual 8 s
    (and 2000 KiB)."""
    if shutil.which("ghc", path=PATH) is None:
        pytest.skip("ghc is not installed here")
    limits = 'echo "$(ulimit -t) $(ulimit -f)"'
    # The command line stands in for ghc: it writes the program that runs next.
    ghc = f"{limits}; printf '#!/bin/bash\\n%s\\n' '{limits}' > prog; chmod +x prog"
    req = Request(lang="haskell", code="", sourcefile="prog.hs", execfile="prog", cmdline=ghc)
    assert run(req).text == "[60 65536]\n8 2000\n"


def test_a_languages_speed_ups_follow_its_compilers_name() -> None:
    assert compiled.with_speedups("javac prog.java", "-J-Xa -J-Xb") == (
        "javac -J-Xa -J-Xb prog.java")
    assert compiled.with_speedups("javac", "-J-Xa") == "javac -J-Xa"
    assert compiled.with_speedups("ghc -v0 prog.hs", "") == "ghc -v0 prog.hs"


def test_exit_137_without_using_the_cpu_is_not_a_limit() -> None:
    assert run(request("exit 137")).killed is None




@pytest.mark.root
def test_daemons_are_killed_but_not_other_requests() -> None:
    async def scenario() -> tuple[Result, Result]:
        other = asyncio.create_task(run_once(request("sleep 2; echo other survived",
                                                     id="other")))
        await asyncio.sleep(0.5)
        daemon = await run_once(request(DAEMON, "python3", id="daemon"))
        return daemon, await other

    daemon, other = asyncio.run(scenario())
    assert daemon.text.strip().isdigit()
    assert not processes_running("sleep", DAEMON_SECONDS)
    assert other.text == "other survived\n"


@pytest.mark.root
def test_fork_bomb_is_contained_and_cleaned_up() -> None:
    settings = RunSettings(limits=Limits(wall_seconds=2))
    result = run(request(":(){ :|:& };:", "bash"), settings)
    assert result.killed == WALL_LIMIT
    vm = pwd.getpwnam("vm").pw_uid
    leftovers = [p for p in os.listdir("/proc") if p.isdigit() and alive(int(p))
                 and os.stat(f"/proc/{p}").st_uid == vm]
    assert leftovers == []


@pytest.mark.root
def test_persist_key_restores_and_saves_without_nesting(tmp_path: Path) -> None:
    settings = RunSettings(persist_root=tmp_path)
    code = "echo run >> log; cat log; pwd"
    first = run(request(code, persist_key="fact.1"), settings).text
    second = run(request(code, persist_key="fact.1"), settings).text
    home = pwd.getpwnam("vm").pw_dir
    assert first == f"run\n{home}/fact.1\n"
    assert second == f"run\nrun\n{home}/fact.1\n"
    assert sorted(os.listdir(tmp_path / "fact.1")) == ["log", "prog.sh"]
    assert not Path(home, "fact.1").exists()


def test_unknown_user_is_a_clear_error() -> None:
    result = run(request("echo hi", id="u"), RunSettings(user="no-such-user"))
    assert result.text == "[Fatal error: no user 'no-such-user' in the guest]\n"
    assert result.id == "u"


def test_clock_is_set_only_when_more_than_a_minute_off() -> None:
    assert not clock.needs_setting(1000.0, 1000)
    assert not clock.needs_setting(1000.0, 1060)
    assert clock.needs_setting(1000.0, 1061)
    assert clock.needs_setting(1000.0, 900)
    assert not clock.needs_setting(1000.0, 0)


def test_cpu_kill_is_told_from_a_faked_status_by_the_cpu_time() -> None:
    from pbotvm.guest.sandbox import CPU_LIMIT, limit_hit

    limits = Limits()
    assert limit_hit(137, 7.91, limits, timed_out=False) == CPU_LIMIT  # tick-sampled rusage
    assert limit_hit(152, 8.0, limits, timed_out=False) == CPU_LIMIT  # SIGXCPU
    assert limit_hit(137, 0.01, limits, timed_out=False) is None  # `exit 137` or a kill -9
    assert limit_hit(1, 8.0, limits, timed_out=False) is None


# A command line bash would only exec runs without bash; the program cannot tell the difference.
SHOW_PROCESS = 'echo "$0 $#: $*"; env | sort; ls -l /proc/$$/fd/ | wc -l'


@pytest.mark.root
def test_a_plain_command_line_runs_as_under_bash() -> None:
    direct = run(request(SHOW_PROCESS, cmdline="sh prog.sh", arguments="a 'b c'"))
    via_bash = run(request(SHOW_PROCESS, cmdline="sh 'prog.sh'", arguments="a 'b c'"))
    # Each request has its own work directory.
    assert re.sub("run-[^\n]+", "run-X", direct.text) == re.sub("run-[^\n]+", "run-X",
                                                                via_bash.text)
    assert direct.text.startswith("prog.sh 2: a b c\n")
    # sh is bash, which counts itself in SHLVL and sets $_ to the command it runs.
    assert "\nSHLVL=1\n" in direct.text and "\n_=/usr/bin/env\n" in direct.text


@pytest.mark.root
def test_an_argument_exec_cannot_carry_is_left_to_bash() -> None:
    code = 'echo "[$1]"'
    direct = run(request(code, cmdline="sh prog.sh", arguments="a\ud800b"))
    via_bash = run(request(code, cmdline="sh 'prog.sh'", arguments="a\ud800b"))
    assert direct.text == via_bash.text == "[a?b]\n"


@pytest.mark.root
def test_what_bash_would_refuse_is_still_reported_by_bash() -> None:
    result = run(request("", cmdline="no-such-program prog.sh"))
    assert result.text == ("/bin/bash: line 1: no-such-program: command not found\n"
                           "  [Exit 127]\n")
    # A script without #! cannot be exec'd: bash runs it itself, as it always did.
    result = run(request("echo from a script", "c11", cmdline="chmod +x prog.sh"))
    assert result.text == "from a script\n"


def _sandbox_output(command: bytes, argv: list[str] | None) -> bytes:
    user = pwd.getpwnam(RunSettings().user)
    outcome = sandbox.run(command, argv=argv, user=user, cwd=Path("/"),
                          env=user_environment(user), stdin=b"", limits=Limits(), keep=1024)
    return outcome.stdout.data


@pytest.mark.root
def test_sandbox_execs_argv_itself_and_falls_back_to_bash() -> None:
    # In a worker process: sandbox.run makes its caller a subreaper.
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        assert pool.submit(_sandbox_output, b"echo bash", ["printf", "argv"]).result() == b"argv"
        assert pool.submit(_sandbox_output, b"echo bash", ["no-such"]).result() == b"bash\n"
        assert pool.submit(_sandbox_output, b"echo bash", None).result() == b"bash\n"


@pytest.mark.root
def test_a_spare_supervisor_forked_ahead_runs_the_next_request() -> None:
    async def scenario() -> tuple[int | None, str, str, int | None, str]:
        supervisors = supervisor.Supervisors(RunSettings())
        try:
            supervisors.prepare()
            spare = supervisors.spare_pid
            assert spare is not None
            # It is born the first process of its box's PID namespace.
            box = os.readlink(f"/proc/{spare}/ns/pid")
            assert box != os.readlink("/proc/self/ns/pid")
            first = await supervisors.run(request("readlink /proc/self/ns/pid"))
            after = supervisors.spare_pid
            second = await supervisors.run(request("readlink /proc/self/ns/pid"))
            return spare, box, first.text, after, second.text
        finally:
            await supervisors.aclose()

    spare, box, first, after, second = asyncio.run(scenario())
    assert first == f"{box}\n"
    assert after is None  # taken; the server prepares the next once the reply is out
    assert second.startswith("pid:[")  # a fresh fork's (an inode number may come again)
    assert spare is not None and not alive(spare)


@pytest.mark.root
def test_a_spare_that_died_is_replaced_and_nothing_is_left() -> None:
    async def scenario() -> tuple[int, Result]:
        supervisors = supervisor.Supervisors(RunSettings())
        try:
            supervisors.prepare()
            spare = supervisors.spare_pid
            assert spare is not None
            os.kill(spare, signal.SIGKILL)
            while alive(spare):  # dead but not reaped: its pipe is closed
                await asyncio.sleep(0.01)
            return spare, await supervisors.run(request("echo hello"))
        finally:
            await supervisors.aclose()

    spare, result = asyncio.run(scenario())
    assert result.text == "hello\n"
    assert not os.path.exists(f"/proc/{spare}")  # reaped, not a zombie


def test_closing_lets_an_idle_spare_go() -> None:
    async def scenario() -> int:
        supervisors = supervisor.Supervisors(RunSettings())
        supervisors.prepare()
        spare = supervisors.spare_pid
        assert spare is not None and alive(spare)
        await asyncio.wait_for(supervisors.aclose(), 5)
        return spare

    assert not os.path.exists(f"/proc/{asyncio.run(scenario())}")


def test_a_supervisor_that_fails_says_why(monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture,
                                          tmp_path: Path) -> None:
    def fail(req: Request, settings: RunSettings, gdb: object) -> Result:
        raise RuntimeError("no room\nat all")

    monkeypatch.setattr(runner, "run_request", fail)  # in the supervisor, a fork of ours
    with caplog.at_level(logging.ERROR, logger="pbotvm.guest"):
        # Without the box's mounts, which need root.
        result = run(request("echo never", id="r-9"),
                     RunSettings(persist_root=tmp_path, box=False))
    assert result == Result(text="[Fatal error: the guest could not run the request "
                                 "(RuntimeError: no room at all)]\n", id="r-9")
    # The supervisor's traceback reaches the server's log (its own handlers are gone).
    assert re.search(r"request r-9: supervisor \d+ failed: RuntimeError: no room at all\n"
                     r"Traceback \(most recent call last\):\n.* in fail\n.*"
                     r"RuntimeError: no room\nat all\n", caplog.text, re.DOTALL), caplog.text


# A guest-server's first request after a boot, in a process of its own.
FIRST_REQUEST = """
import asyncio
from pbotvm.guest import supervisor
from pbotvm.guest.runner import RunSettings
from pbotvm.protocol import Request

async def first() -> str:
    supervisors = supervisor.Supervisors(RunSettings())
    try:
        return (await supervisors.run(Request(
            lang="sh", sourcefile="prog.sh", execfile="prog.sh", cmdline="sh prog.sh",
            code="echo $((2**10))"))).text
    finally:
        await supervisors.aclose()

print(asyncio.run(first()), end="")
"""


@pytest.mark.root
def test_the_first_request_after_a_boot_gets_its_shell() -> None:
    # /run is an empty tmpfs after a boot, and read-only in a request's box: sh's shim must be
    # made before the supervisor shuts itself in (on a fresh machine, 93 C requests of the
    # suite answered "[Fatal error: ...]" until a guest-server had made it).
    boot = (f"mount -t tmpfs tmpfs /run && exec {shlex.quote(sys.executable)} "
            f"-c {shlex.quote(FIRST_REQUEST)}")
    done = subprocess.run(["unshare", "--mount", "sh", "-c", boot], capture_output=True,
                          text=True, timeout=60, check=False)
    assert (done.stdout, done.returncode) == ("1024\n", 0), done.stderr


@pytest.mark.root
def test_programs_run_with_fixed_addresses() -> None:
    # As gdb runs programs, and faster under TCG (sandbox._exec_as_user).
    assert text("cat /proc/self/personality", "sh") == "00040000\n"
    assert text("print(open('/proc/self/personality').read(), end='')", "python3") == (
        "00040000\n")
