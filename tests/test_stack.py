"""End to end: vm-client -> vm-server -> vm-exec -> serial (PTY) -> guest-server and back."""

import json
import pwd
import re
import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pbotvm.protocol import PERSIST_KEY_RULE, Framing, Request, encode_request
from tests.conftest import until
from tests.support.perl_client import perl_ask
from tests.support.stack import LocalStack

pytestmark = pytest.mark.root


def test_sh(stack: LocalStack) -> None:
    assert stack.ask("-lang=sh echo hello world") == "hello world"


def test_bash(stack: LocalStack) -> None:
    assert stack.ask("-lang=bash a=(x y z); echo ${#a[@]} ${a[1]}") == "3 y"


def test_python3_keeps_indentation(stack: LocalStack) -> None:
    code = "-lang=python3 for i in range(2):\n    if i:\n        print('odd', i)"
    assert stack.ask(code) == "odd 1"


def test_perl(stack: LocalStack) -> None:
    assert stack.ask("-lang=perl print join(',', map { $_ * 2 } 1..3)") == "2,4,6"


def test_c_with_gcc(stack: LocalStack) -> None:
    code = '-lang=c11 #include <stdio.h>\nint main(void) { printf("%d\\n", 6 * 7); }'
    assert stack.ask(code) == "42"


def test_runs_as_unprivileged_user(stack: LocalStack) -> None:
    assert stack.ask("-lang=sh id -un") == "vm"


def test_plain_line_from_vm_client_argv(stack: LocalStack) -> None:
    assert stack.client("-lang=sh", "echo", "ö", "ok").stdout == "ö ok\n"


def test_stderr_then_stdout_and_exit_status(stack: LocalStack) -> None:
    assert stack.ask("-lang=sh echo out; echo err >&2; exit 3") == "err\n out\n [Exit 3]"
    assert stack.ask("-lang=sh exit 4") == "Exit 4."
    assert stack.ask("-lang=sh true") == "Success (no output)."
    assert stack.ask("-lang=sh true", factoid="#test:foo") == ""


def test_args_and_arguments(stack: LocalStack) -> None:
    code = "-lang=bash -args \"'a b' c\" for x; do echo \"[$x]\"; done"
    assert stack.ask(code) == "[a b]\n[c]"
    assert stack.ask("-lang=sh echo $#: $2", arguments="one two") == "2: two"


def test_stdin_with_escapes(stack: LocalStack) -> None:
    assert stack.ask("-lang=sh cat -A -stdin a\\tb\\nc") == "a^Ib$\nc$"
    assert stack.ask("-lang=python3 print(input()[::-1]) -stdin=hello") == "olleh"


def test_interpreter_options_replace_the_defaults(stack: LocalStack) -> None:
    # perl's default option is -w; given options replace it, so no warning here.
    assert "uninitialized" in stack.ask("-lang=perl print undef . 1")
    assert stack.ask("-lang=perl -l print undef . 1") == "1"


def test_newline_escape_outside_quotes(stack: LocalStack) -> None:
    assert stack.ask("-lang=sh printf '%s\\n' 'a\\nb'\\necho c") == "a\\nb\nc"


def test_output_post_processing(stack: LocalStack) -> None:
    assert stack.ask("-lang=sh printf 'ab\\bc|\\033[1m|\\f|\\001|\\002'") == (
        "ac|<esc>[1m|<ff>|\\x01|\x02")
    assert re.fullmatch(r"x\*[A-Z]+\*y", stack.ask("-lang=sh printf 'x\\ay'"))
    assert stack.ask("-lang=sh printf 'a\\377b\\n'") == "a\\xFFb"


def test_info(stack: LocalStack) -> None:
    assert stack.ask("-lang=sh -info") == "sh cmdline: sh prog.sh"
    assert stack.ask("-lang=perl -info x") == "perl cmdline: perl -w prog.pl"


def test_unknown_language_lists_the_supported_ones(stack: LocalStack) -> None:
    reply = stack.ask("-lang=cobol DISPLAY 'HI'.")
    assert reply.startswith("Language 'cobol' is not supported.\nSupported languages are: bash,")
    assert "python3" in reply and "c++" in reply


def test_usage_on_empty_code(stack: LocalStack) -> None:
    assert stack.ask("-lang=sh").startswith("Usage: cc [-lang=<language>]")
    assert stack.ask("", usage="Usage: sh <code>") == "Usage: sh <code>"


def test_machines(stack: LocalStack) -> None:
    assert stack.ask("-vm=main -lang=sh echo picked") == "picked"
    assert stack.ask("-vm=nope -lang=sh echo x") == (
        "Unknown machine 'nope'; available machines are: main")
    assert "disabled" in stack.ask("-vm-serial=22 -lang=sh echo x")


def test_malformed_json_is_one_clear_line(stack: LocalStack) -> None:
    reply = stack.client('{"nick":"a","code":"-lang=sh echo hi"').stdout
    assert reply.startswith("Malformed JSON request:") and reply.count("\n") == 1


@pytest.mark.parametrize(("line", "reply"), [
    (b'{"code": ' + b"9" * 5000 + b"}",
     b"Malformed JSON request: a number has more than 4300 digits.\n"),
    (b'{"code": ' + b"[" * 10000 + b"]" * 10000 + b"}",
     b"Malformed JSON request: nested too deeply.\n"),
    (b'{"code": "-lang=sh echo \\ud800"}',
     b"Malformed JSON request: 'code' has a lone surrogate (\\ud800), which is no character.\n"),
    (b'{"code": "-lang=sh echo caf\xe9"}',
     b"Malformed JSON request: byte 0xE9 at character 27 is not UTF-8.\n"),
])
def test_hostile_json_gets_one_clear_line_and_the_server_carries_on(
        stack: LocalStack, line: bytes, reply: bytes) -> None:
    with socket.create_connection(("127.0.0.1", stack.server)) as s:
        s.sendall(line + b"\n")
        assert s.makefile("rb").read() == reply
    assert stack.ask("-lang=sh echo still here") == "still here"


@pytest.mark.parametrize("key", ["../x", ".", ".."])
def test_a_bad_persist_key_is_answered_at_once_and_holds_up_no_one(
        stack: LocalStack, key: str) -> None:
    # The guest refused it with an answer that had no request id: the host dropped that,
    # waited for its time-out, answered [Timed-out] and reverted the machine.
    reverts = stack.log("vm-server").count("reverting")
    with ThreadPoolExecutor(1) as pool:
        start = time.monotonic()
        bad = pool.submit(stack.ask, "-lang=sh echo hi", **{"persist-key": key})
        time.sleep(0.1)
        assert stack.ask("-lang=sh echo meanwhile", nick="other") == "meanwhile"
        assert time.monotonic() - start < 1
        assert bad.result() == PERSIST_KEY_RULE
    assert time.monotonic() - start < 1
    assert stack.log("vm-server").count("reverting") == reverts


def test_a_tree_too_deep_for_rmtree_is_cleaned_up(stack: LocalStack) -> None:
    # shutil.rmtree recursed once per level, and failed: the reply was a fatal error and
    # the tree stayed.
    code = ("-lang=python3 import os\\nprint(os.getcwd())\\n"
            "for i in range(3000): os.mkdir('d'); os.chdir('d')")
    workdir = Path(stack.ask(code))
    assert workdir.parent == Path(pwd.getpwnam("vm").pw_dir) and not workdir.exists()
    assert stack.ask("-lang=sh echo next") == "next"


def test_invalid_utf8_from_the_client_is_escaped(stack: LocalStack) -> None:
    with socket.create_connection(("127.0.0.1", stack.server)) as s:
        s.sendall(b"-lang=sh echo 'a\xffb'\n")
        reply = s.makefile("rb").read()
    assert reply == b"a\\xFFb\n"


def test_silent_client_is_closed_after_5_seconds(stack: LocalStack) -> None:
    with socket.create_connection(("127.0.0.1", stack.server)) as s:
        start = time.monotonic()
        s.settimeout(15)
        assert s.recv(100) == b""
        assert 4.5 < time.monotonic() - start < 8


def test_output_is_capped_with_a_marker(stack: LocalStack) -> None:
    reply = stack.ask("-lang=sh head -c 3000000 /dev/zero | tr '\\0' a")
    assert len(reply) < 1024 * 1024 + 200
    assert re.search(r"output truncated: \d+ more bytes", reply)
    assert reply.startswith("a" * 1000)


def test_megabyte_token(stack: LocalStack) -> None:
    # Too long for one argv entry, so sent on the socket as PBot's line would arrive.
    token = "x" * 1_000_000
    line = json.dumps({"nick": "t", "channel": "#t",
                       "code": f"-lang=python3 print(len('{token}'))"})
    with socket.create_connection(("127.0.0.1", stack.server)) as s:
        s.sendall(line.encode() + b"\n")
        assert s.makefile("rb").read() == b"1000000\n"


def test_concurrent_clients_get_their_own_answers(stack: LocalStack) -> None:
    def one(n: int) -> list[tuple[str, str]]:
        return [(f"c{n}r{i}", stack.ask(f"-lang=sh echo c{n}r{i}")) for i in range(5)]

    with ThreadPoolExecutor(8) as pool:
        results = [pair for chunk in pool.map(one, range(8)) for pair in chunk]
    assert len(results) == 40
    assert all(want == got for want, got in results), results


def test_two_requests_queued_on_the_serial_line(stack: LocalStack) -> None:
    """Written back to back on the raw serial port, both are answered, in order."""
    data = b""
    for n, framing in ((1, Framing.V2023), (2, Framing.HEAD)):
        req = Request(lang="sh", sourcefile="prog.sh", execfile="prog.sh",
                      cmdline="sh prog.sh", code=f"echo queued{n}", id=f"q{n}")
        data += b"".join(encode_request(req, framing))
    with socket.create_connection(("127.0.0.1", stack.serial)) as s:
        s.settimeout(10)
        s.sendall(data)
        lines: list[bytes] = []
        f = s.makefile("rb")
        while len([x for x in lines if x == b"result:end"]) < 2:
            lines.append(f.readline().rstrip(b"\r\n"))
    results = [json.loads(x[len(b"result:"):]) for x in lines if x != b"result:end"]
    assert [(r["id"], r["result"]) for r in results] == [("q1", "queued1\n"),
                                                         ("q2", "queued2\n")]


def test_default_stdin_comes_from_fortune(tmp_path_factory: pytest.TempPathFactory) -> None:
    if not shutil.which("fortune") and not shutil.which("/usr/games/fortune"):
        pytest.fail("fortune is missing: ./dev setup installs fortune-mod")
    fortune = shutil.which("fortune") or "/usr/games/fortune"
    with LocalStack(tmp_path_factory.mktemp("fortune"),
                    env={"PBOTVM_STDIN_COMMAND": f"{fortune} -s"}) as s:
        reply = s.ask("-lang=sh cat")
    assert reply.strip() and "\n" not in reply and "\t" not in reply


def test_perl_vm_client_works_against_our_server(stack: LocalStack, tmp_path: Path) -> None:
    assert perl_ask(tmp_path, stack.server, "-lang=sh echo from perl") == "from perl\n"


def test_an_unreachable_vsock_cid_makes_no_request_wait(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    # A CID is set and no guest has it (with /dev/vsock, a connect there hangs until its
    # time-out): vsock is probed in the background, and every request, the first one too,
    # goes straight over serial. It used to cost each request after a minute of quiet 1 s.
    # A host without vhost-vsock, where no guest has a vsock device, does not even probe.
    with LocalStack(tmp_path_factory.mktemp("vsock"),
                    env={"PBOTVM_CID": "7", "PBOTVM_STDIN_COMMAND": ""}) as s:
        assert s.ask("-lang=sh echo via serial") == "via serial"
        # The probe's verdict, once its time-out is over.
        until(lambda: "requests go over" in s.log("vm-server"), 10)
        log = s.log("vm-server")
    answered = [int(ms) for ms in re.findall(r"answered in (\d+) ms", log)]
    # The first is the stack's readiness check, sent as soon as the guest beat.
    assert answered and max(answered) < 500, log
    assert re.search(r"pbot-vm: requests go over serial 127\.0\.0\.1:\d+ (until the guest "
                     r"restarts \(vsock 7:5555: |\(this host has no /dev/vhost-vsock: )",
                     log), log


def test_a_half_frame_on_the_serial_line_spoils_nothing(stack: LocalStack) -> None:
    # What a local client (or a writer that died) left on the line.
    with socket.create_connection(("127.0.0.1", stack.serial)) as s:
        s.sendall(b'{"lang":"sh","cmdline":"sh prog.sh","code":"echo injec')
    assert stack.ask("-lang=sh echo the real request") == "the real request"
