"""vm-client: what PBot runs once per command. Sends its argv to vm-server, prints the reply.

PBot starts it for every message, so it imports nothing heavy: no click, no pbotvm config,
and the C ``_socket`` module rather than ``socket`` (whose enum/selectors imports cost ~9 ms,
a third of a whole request). Not even ``__future__``: the annotations work at run time.
"""

import _socket
import os
import sys

# The host settings table's defaults (a test checks): importing the table would slow the start.
ADDR = "127.0.0.1"
PORT = "9000"
HELP = f"""\
Usage: vm-client CODE...

  Send CODE (all arguments joined by single spaces; usually one JSON object
  {{"nick":…,"channel":…,"code":…}}) to vm-server and print its reply.

  Environment: PBOTVM_ADDR (default {ADDR}), PBOTVM_SERVER (port, default {PORT}).
"""


def _connect(addr: str, port: int) -> _socket.socket:
    error: OSError = OSError("no address")
    # A str host goes through the "idna" codec, whose imports (re, enum, unicodedata, ...)
    # took longer than the rest of the start-up; ASCII bytes are what that codec would give.
    host = addr.encode() if addr.isascii() else addr
    for family, kind, proto, _, sockaddr in _socket.getaddrinfo(host, port, 0,
                                                                _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.connect(sockaddr)
            return sock
        except OSError as e:
            sock.close()
            error = e
    raise error


def run(args: list[str]) -> int:
    """Send ``args`` as one line and print the reply; returns the exit status."""
    if args in (["--help"], ["-h"]):
        sys.stdout.write(HELP)
        return 0
    addr = os.environ.get("PBOTVM_ADDR") or ADDR
    port_text = os.environ.get("PBOTVM_SERVER") or PORT
    if not port_text.isdigit():
        sys.stdout.write(f"Fatal error: PBOTVM_SERVER={port_text!r} is not a port number\n")
        return 2
    try:
        sock = _connect(addr, int(port_text))
    except OSError as e:
        sys.stdout.write(f"Fatal error: {e.strerror or e}; try again later\n")
        return e.errno or 1
    try:
        sock.sendall(" ".join(args).encode("utf-8", "surrogateescape") + b"\n")
        out = sys.stdout.buffer
        while chunk := sock.recv(65536):
            out.write(chunk)
        out.flush()
    finally:
        sock.close()
    return 0


def main() -> None:
    """The command; never returns."""
    status = run(sys.argv[1:])
    sys.stdout.flush()
    # All is written and closed: skip the interpreter's tear-down (~2 ms, a tenth of a
    # request). An error above still takes the normal way out, with its traceback.
    os._exit(status)


if __name__ == "__main__":
    main()
