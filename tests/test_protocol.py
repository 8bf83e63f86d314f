import json
import re
from typing import Any

import pytest

from pbotvm.protocol import (
    CHUNK_2023,
    CHUNK_HEAD,
    FRAME_START,
    PERSIST_KEY_RULE,
    Framing,
    ProtocolError,
    Request,
    RequestDecoder,
    Result,
    ResultDecoder,
    encode_request,
    encode_result,
    parse_client_line,
)


def request(code: str = "echo hi", **kw: Any) -> Request:
    return Request(lang="sh", sourcefile="prog.sh", execfile="prog.sh", cmdline="sh prog.sh",
                   code=code, input="", arguments="", date=1795901501, **kw)


def test_2023_framing_is_json_then_end_marker() -> None:
    data = b"".join(encode_request(request(id="a1"), Framing.V2023))
    assert data.endswith(b"\n:end:\n")
    obj = json.loads(data[: -len(b"\n:end:\n")])
    assert obj["code"] == "echo hi" and obj["id"] == "a1" and obj["date"] == 1795901501


def test_2023_framing_writes_pieces_of_at_most_16383_bytes() -> None:
    pieces = encode_request(request("x" * 40000), Framing.V2023)
    assert len(pieces) == 3 and all(len(p) <= CHUNK_2023 for p in pieces)


def test_head_framing_is_4000_byte_lines_then_blank_line() -> None:
    pieces = encode_request(request("y" * 4500), Framing.HEAD)
    assert pieces[0] == FRAME_START and pieces[-1] == b"\n"
    assert all(len(p) <= CHUNK_HEAD + 1 and p.endswith(b"\n") for p in pieces)
    assert b"".join(p[:-1] for p in pieces[1:-1]) == json.dumps(
        request("y" * 4500).to_json(), separators=(",", ":")).encode()


def original_frame(req: Request, framing: Framing) -> bytes:
    """What the original's vm-exec writes (no FRAME_START): 2023 appends ``\\n:end:\\n``,
    HEAD cuts 4000-byte lines and adds a blank line (shared/spec/protocol.md)."""
    payload = json.dumps(req.to_json(), separators=(",", ":")).encode()
    if framing is Framing.V2023:
        return payload + b"\n:end:\n"
    return b"".join(payload[i : i + 4000] + b"\n" for i in range(0, len(payload), 4000)) + b"\n"


# A writer that died mid-request (or a stray client on the line) left half a frame behind.
HALF_FRAME = b'{"lang":"sh","cmdline":"sh prog.sh","code":"echo pwn'


@pytest.mark.parametrize("framing", list(Framing))
def test_a_half_frame_does_not_spoil_our_hosts_next_request(framing: Framing) -> None:
    # Straight after it, no pause: the frame start marks where the request begins.
    decoder = RequestDecoder()
    assert decoder.feed(HALF_FRAME, now=10.0) == []
    assert decoder.feed(b"".join(encode_request(request(id="next"), framing)),
                        now=10.01) == [request(id="next")]


@pytest.mark.parametrize("framing", list(Framing))
@pytest.mark.parametrize("size", [10, 9000])
def test_after_an_idle_gap_an_original_hosts_request_is_answered(framing: Framing,
                                                                 size: int) -> None:
    decoder = RequestDecoder()
    assert decoder.feed(HALF_FRAME, now=10.0) == []
    frame = original_frame(request("x" * size, id="next"), framing)
    got = [r for i in range(0, len(frame), 1000)  # read as the tty delivers it, in pieces
           for r in decoder.feed(frame[i : i + 1000], now=11.5 + i / 1e6)]
    assert got == [request("x" * size, id="next")]
    # And the decoder is in step for the one after.
    assert decoder.feed(original_frame(request(id="then"), framing), now=12.0) == [
        request(id="then")]


def test_without_a_gap_or_a_start_the_merged_frame_is_still_an_error() -> None:
    # What the idle rule cannot know: the original's host wrote right after the garbage.
    decoder = RequestDecoder()
    decoder.feed(HALF_FRAME, now=10.0)
    (merged,) = decoder.feed(original_frame(request(id="next"), Framing.V2023), now=10.2)
    assert isinstance(merged, ProtocolError)


def test_a_pause_inside_a_good_request_loses_nothing() -> None:
    # The guest's loop was busy for 2 s while a request arrived: the whole frame decodes, so
    # nothing is dropped.
    frame = original_frame(request("x" * 100, id="paused"), Framing.V2023)
    decoder = RequestDecoder()
    assert decoder.feed(frame[:60], now=10.0) == []
    assert decoder.feed(frame[60:], now=12.0) == [request("x" * 100, id="paused")]


@pytest.mark.parametrize("framing", list(Framing))
def test_decoder_accepts_both_framings_fed_one_byte_at_a_time(framing: Framing) -> None:
    original = request("printf 'é\\n'", id="42")
    decoder = RequestDecoder()
    got: list[object] = []
    for byte in b"".join(encode_request(original, framing)):
        got += decoder.feed(bytes([byte]))
    assert got == [original]


def test_decoder_splits_two_requests_written_back_to_back() -> None:
    first, second = request("echo 1", id="1"), request("echo 2", id="2")
    data = b"".join(encode_request(first, Framing.V2023) + encode_request(second, Framing.HEAD))
    assert RequestDecoder().feed(data) == [first, second]


def test_decoder_reports_garbage_and_keeps_going() -> None:
    decoder = RequestDecoder()
    out = decoder.feed(b"not json\n:end:\n[1,2]\n\n")
    assert [type(x) for x in out] == [ProtocolError, ProtocolError]
    assert "not JSON" in str(out[0]) and "not a JSON object" in str(out[1])
    assert decoder.feed(b"".join(encode_request(request(id="ok")))) == [request(id="ok")]


def test_decoder_rejects_bad_fields() -> None:
    out = RequestDecoder().feed(b'{"cmdline":"sh prog.sh","persist-key":"a b;rm"}\n\n'
                                b'{"cmdline":"x","sourcefile":"../etc/passwd"}\n\n'
                                b'{"cmdline":["x"]}\n\n'
                                b'{"code":"x"}\n\n')
    assert all(isinstance(x, ProtocolError) for x in out) and len(out) == 4


def test_decoder_ignores_unknown_fields_and_accepts_null_input() -> None:
    (req,) = RequestDecoder().feed(b'{"cmdline":"sh prog.sh","input":null,"new":1}\n:end:\n')
    assert isinstance(req, Request) and req.input == "" and req.lang == "_default"


def test_decoder_bounds_its_buffer() -> None:
    decoder = RequestDecoder(limit=1000)
    (err,) = decoder.feed(b"{" + b"a" * 2000)
    assert isinstance(err, ProtocolError)
    assert decoder.feed(b"".join(encode_request(request()))) == [request()]


def reply(*results: Result) -> list[bytes]:
    return [line + b"\n" for r in results for line in encode_result(r).splitlines()]


def test_result_decoder_skips_echo_and_stale_results() -> None:
    decoder = ResultDecoder("new")
    lines = [b'{"lang":"sh"}\r\n', b":end:\r\n", *reply(Result("old answer\n", id="old")),
             *reply(Result("hello\n", id="new", exit=0))]
    for line in lines:
        if not decoder.done:
            decoder.feed_line(line)
    assert decoder.done and decoder.text == "hello\n\n" and decoder.exit == 0


def test_result_decoder_accepts_an_original_guest_without_id() -> None:
    decoder = ResultDecoder("abc")
    for line in (b'result:{"result":"hi\\n"}\r\n', b"trailing text\r\n", b"result:end\r\n"):
        decoder.feed_line(line)
    assert decoder.done and decoder.text == "hi\n\ntrailing text\n"


def test_once_ids_are_echoed_a_result_without_one_is_refused() -> None:
    # A frame put on the serial line by someone else, then the guest's own answer.
    decoder = ResultDecoder("abc", require_id=True)
    for line in (*reply(Result("INJECTED\n")), *reply(Result("real\n", id="abc"))):
        decoder.feed_line(line)
    assert decoder.done and decoder.text == "real\n\n"
    assert decoder.dropped == 1 and decoder.id_echoed


@pytest.mark.parametrize(("results", "echoed"), [
    ([Result("x", id="abc")], True),
    ([Result("x")], False),  # an original guest
    ([Result("old", id="zzz"), Result("x")], False),
])
def test_the_decoder_tells_whether_the_guest_echoed_the_id(results: list[Result],
                                                           echoed: bool) -> None:
    decoder = ResultDecoder("abc")
    for line in reply(*results):
        decoder.feed_line(line)
    assert decoder.done and decoder.id_echoed is echoed


def test_result_decoder_reports_killed_and_escapes_invalid_utf8() -> None:
    decoder = ResultDecoder("1")
    decoder.feed_line(b'result:{"result":"x","id":"1","killed":"cpu time limit"}\n')
    decoder.feed_line(b"\xff\xfe tail\n")
    assert decoder.killed == "cpu time limit"
    assert decoder.text == "x\n\\xFF\\xFE tail\n"


def test_plain_client_line_shows_invalid_utf8_as_escapes() -> None:
    line = b"echo caf\xe9".decode("utf-8", "surrogateescape")
    assert parse_client_line(line) == {"code": "echo caf\\xE9"}


@pytest.mark.parametrize("frame", [
    b'{"cmdline":"sh prog.sh","code":' + b"[" * 100000 + b"]" * 100000 + b"}\n:end:\n",
    b'{"cmdline":"sh prog.sh","code":"x","date":' + b"9" * 5000 + b"}\n:end:\n",
    b'{"cmdline":"sh prog.sh","code":"x","date":"' + b"9" * 5000 + b'"}\n:end:\n',
])
def test_guest_decoder_answers_hostile_frames_and_carries_on(frame: bytes) -> None:
    decoder = RequestDecoder()
    bad, good = decoder.feed(frame + b'{"cmdline":"sh prog.sh","code":"ok"}\n:end:\n')
    assert isinstance(bad, ProtocolError) and "\n" not in str(bad)
    assert isinstance(good, Request) and good.code == "ok"


def test_client_line_json_and_plain() -> None:
    assert parse_client_line('{"nick":"a","channel":"#c","code":"-lang=sh echo"}') == {
        "nick": "a", "channel": "#c", "code": "-lang=sh echo"}
    assert parse_client_line("-lang=sh echo hi there") == {"code": "-lang=sh echo hi there"}
    assert parse_client_line("{ echo a; }") == {"code": "{ echo a; }"}


@pytest.mark.parametrize("line, message", [
    ('{"code": "x"', "Malformed JSON request: Expecting"),
    ('{"code": ["x"]}', "'code' must be a string"),
    # Each of these once gave a traceback and an empty reply.
    ('{"code": ' + "9" * 5000 + "}", "Malformed JSON request: a number has more than 4300 digits."),
    ('{"code": ' + "[" * 10000 + "]" * 10000 + "}", "Malformed JSON request: nested too deeply"),
    ('{"code": "echo \\ud800"}', "'code' has a lone surrogate (\\ud800), which is no character"),
    # A Latin-1 byte, as vm-server reads it (surrogateescape): not "Invalid \\escape".
    ('{"code": "caf' + b"\xe9".decode("utf-8", "surrogateescape") + '"}',
     "Malformed JSON request: byte 0xE9 at character 13 is not UTF-8."),
])
def test_client_line_malformed_json_is_one_clear_line(line: str, message: str) -> None:
    with pytest.raises(ProtocolError) as e:
        parse_client_line(line)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_decoder_is_linear_in_request_size() -> None:
    import time

    data = b"".join(encode_request(request("z" * 1_000_000, id="big")))
    decoder = RequestDecoder()
    start = time.monotonic()
    got = [r for i in range(0, len(data), 4096) for r in decoder.feed(data[i : i + 4096])]
    assert time.monotonic() - start < 1.0
    assert got == [request("z" * 1_000_000, id="big")]


@pytest.mark.parametrize("key", [".", "..", "a/b", ""])
def test_persist_key_must_be_a_plain_name(key: str) -> None:
    line = json.dumps({"cmdline": "x", "persist-key": key}).encode() + b"\n\n"
    out = RequestDecoder().feed(line)
    assert (key == "" and isinstance(out[0], Request)) or isinstance(out[0], ProtocolError)


@pytest.mark.parametrize("key", ["fact.1", "A-b_c", "x" * 64, "...", ".x", "../x", ".", "..",
                                 "a/b", "x" * 65, "a b", "a\nb", "é", "a\0"])
def test_the_host_refuses_a_persist_key_the_guest_would(key: str) -> None:
    line = json.dumps({"cmdline": "x", "persist-key": key}).encode() + b"\n\n"
    guest_takes = isinstance(RequestDecoder().feed(line)[0], Request)
    client_line = json.dumps({"nick": "n", "code": "echo", "persist-key": key})
    if guest_takes:
        assert parse_client_line(client_line)["persist-key"] == key
    else:
        with pytest.raises(ProtocolError, match=re.escape(PERSIST_KEY_RULE)):
            parse_client_line(client_line)
    assert guest_takes == (key in ("fact.1", "A-b_c", "x" * 64, "...", ".x"))

