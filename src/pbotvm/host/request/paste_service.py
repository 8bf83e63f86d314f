"""Posting a paste to the paste service (``PBOTVM_PASTE_URL``), as the original posted to 0x0.st:
one multipart/form-data field ``file``; the answer is the paste's URL (the response body,
trimmed) or one ``error pasting: ...`` line.

Redirects are followed as the original's LWP did: 301, 307 and 308 repeat the POST at the new
address, 302 and 303 fetch the answer there.

The upload speaks HTTP/1.1 on asyncio's streams, one request per connection, so that a time-out
or a cancellation closes its socket at once and no thread is left running it: vm-server's
threads (astyle, the C preprocessing) never wait behind a slow service. Only a host name's
look-up needs a thread, from a small pool of its own. At most ``MAX_UPLOADS`` run at once; the
others wait for a slot within their time-out.

Whatever the service answers reaches a channel only as one line, its control characters
escaped as in a program's output.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import secrets
import socket
import ssl
import urllib.parse
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pbotvm.host.request.output import postprocess
from pbotvm.tokenizer import PERL_SPACE

TIMEOUT = 10.0
MAX_UPLOADS = 4
MAX_REDIRECTS = 10  # as urllib
FIELD = "file"
FILENAME = "filename"
# An honest client name: 0x0.st refused the original's browser-like "Mozilla/5.0" (403).
USER_AGENT = "pbotvm (pbot-vm)"
_MAX_ANSWER = 64 * 1024  # a URL is short; more is not read
_MAX_HEAD = 64 * 1024  # the status line and headers, in all
_REPEAT_POST = (301, 307, 308)
_FETCH = (302, 303)

# getaddrinfo cannot be cancelled: a look-up that hangs holds one of these threads, no other.
_RESOLVER = ThreadPoolExecutor(MAX_UPLOADS, thread_name_prefix="paste-resolver")
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary())


class PasteError(Exception):
    """The upload failed; the message is the user's line."""


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # names in lower case
    body: bytes


def form_data(data: bytes) -> tuple[bytes, str]:
    """The body and Content-Type of a form with the one file field."""
    boundary = secrets.token_hex(16)
    while boundary.encode() in data:
        boundary = secrets.token_hex(16)
    body = (f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{FIELD}"; filename="{FILENAME}"\r\n'
            "Content-Type: text/plain; charset=utf-8\r\n\r\n").encode() + data + (
        f"\r\n--{boundary}--\r\n").encode()
    return body, f"multipart/form-data; boundary={boundary}"


def one_line(text: str) -> str:
    """What the service said (or we say of it) as a channel may see it: control characters
    escaped as in program output, line breaks too."""
    return postprocess(text).replace("\r", "\\x0D").replace("\n", "\\x0A")


async def upload(data: bytes, url: str, timeout: float = TIMEOUT) -> str:
    """Upload ``data``: the paste's URL or one error line, within ``timeout`` s in all (the
    wait for a slot included)."""
    host = _netloc(url)
    slots = _slots.setdefault(asyncio.get_running_loop(), asyncio.Semaphore(MAX_UPLOADS))
    started = False
    try:
        async with asyncio.timeout(timeout), slots:
            started = True
            answer = await _post(data, url)
    except TimeoutError:
        answer = (f"error pasting: no answer from {host} within {timeout:g} s" if started else
                  f"error pasting: {MAX_UPLOADS} pastes under way, try again soon")
    except PasteError as e:
        answer = str(e)
    return one_line(answer)


async def _post(data: bytes, url: str) -> str:
    body, content_type = form_data(data)
    method = "POST"
    for _ in range(MAX_REDIRECTS + 1):
        response = await exchange(method, url, body if method == "POST" else b"",
                                  content_type if method == "POST" else None)
        location = response.headers.get("location")
        if response.status in (*_REPEAT_POST, *_FETCH) and location:
            url = urllib.parse.urljoin(url, location)
            if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                raise PasteError(f"error pasting: redirected to {url}, which is not http(s)")
            if response.status in _FETCH:
                method = "GET"
            continue
        if not 200 <= response.status < 300:
            raise PasteError(f"error pasting: {response.status} {response.reason}")
        answer = response.body.decode("utf-8", "replace").strip(PERL_SPACE)
        return answer or f"error pasting: {_netloc(url)} answered no URL"
    raise PasteError(f"error pasting: more than {MAX_REDIRECTS} redirects")


async def exchange(method: str, url: str, body: bytes, content_type: str | None) -> Response:
    """One request on a connection of its own; the answer's body is read only for a 2xx."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise PasteError(f"error pasting: bad port in {url}") from None
    host = parts.hostname or ""
    netloc = _netloc(url)
    reader, writer = await _connect(host, port, parts.scheme == "https", netloc)
    try:
        head = [f"{method} {urllib.parse.urlunsplit(('', '', parts.path or '/', parts.query, ''))}"
                " HTTP/1.1", f"Host: {netloc}", f"User-Agent: {USER_AGENT}",
                "Accept-Encoding: identity", "Connection: close"]
        if content_type is not None:
            head += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
        writer.write("\r\n".join([*head, "", ""]).encode("latin-1") + body)
        await writer.drain()
        return await read_response(reader)
    except OSError as e:
        raise PasteError(f"error pasting: {netloc}: {_reason(e)}") from None
    except asyncio.IncompleteReadError:
        raise PasteError(f"error pasting: {netloc} closed the connection mid-answer") from None
    except (ValueError, asyncio.LimitOverrunError) as e:
        raise PasteError(f"error pasting: {netloc} answered no HTTP ({e})") from None
    finally:
        writer.transport.abort()  # at once, whatever is left unread (the server closes too)


async def _connect(host: str, port: int, tls: bool,
                   netloc: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the first of the host's addresses that takes it."""
    try:
        addresses = [ipaddress.ip_address(host).compressed]
    except ValueError:
        try:
            found = await asyncio.get_running_loop().run_in_executor(
                _RESOLVER, functools.partial(socket.getaddrinfo, host, port,
                                             type=socket.SOCK_STREAM))
        except OSError as e:
            raise PasteError(f"error pasting: cannot connect to {netloc} ({_reason(e)})") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    error: OSError = OSError("no address")
    for address in addresses:
        try:
            return await asyncio.open_connection(
                address, port, ssl=_tls_context() if tls else None,
                server_hostname=host if tls else None, limit=_MAX_HEAD)
        except OSError as e:
            error = e
    raise PasteError(f"error pasting: cannot connect to {netloc} ({_reason(error)})")


def _netloc(url: str) -> str:
    """The host and port of ``url``, as said to the service and to the user (no password)."""
    return urllib.parse.urlsplit(url).netloc.rpartition("@")[2]


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def _reason(error: OSError) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {error.verify_message}"
    if isinstance(error, ssl.SSLError):
        return str(error.reason or error)
    if isinstance(error, socket.gaierror) or not isinstance(error.errno, int):
        return str(error.strerror or error or type(error).__name__)
    return os.strerror(error.errno)  # asyncio's message names the address; our line, the host


async def read_response(reader: asyncio.StreamReader) -> Response:
    """The answer to our request (informational answers skipped); ValueError if it is not
    HTTP, IncompleteReadError if it stops short."""
    size = 0
    while True:
        lines: list[str] = []
        # Up to the empty line; a lone LF ends a line too, as most clients take it.
        while raw := (await reader.readuntil(b"\n")).rstrip(b"\r\n"):
            size += len(raw)
            if size > _MAX_HEAD:
                raise ValueError(f"headers over {_MAX_HEAD} bytes")
            lines.append(raw.decode("latin-1"))
        if not lines:
            raise ValueError("no status line")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/") or not (code.isdigit() and len(code) == 3):
            raise ValueError(f"status line {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise ValueError(f"header line {line[:80]!r}")
            headers.setdefault(name.strip().lower(), value.strip())
        status = int(code)
        if status >= 200:
            body = await _body(reader, headers) if status < 300 else b""
            return Response(status, reason.strip(), headers, body)


async def _body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    """Up to ``_MAX_ANSWER`` bytes of the body: chunked, of a Content-Length, or to the end."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        pieces, size = [], 0
        while size < _MAX_ANSWER:
            chunk = int((await reader.readuntil(b"\n")).split(b";")[0].strip(), 16)
            if chunk == 0:
                break
            pieces.append(await reader.readexactly(min(chunk, _MAX_ANSWER - size)))
            size += len(pieces[-1])
            if size < _MAX_ANSWER:
                await reader.readuntil(b"\n")
        return b"".join(pieces)
    if "content-length" in headers:
        length = int(headers["content-length"])
        if length < 0:
            raise ValueError(f"Content-Length {length}")
        return await reader.readexactly(min(length, _MAX_ANSWER))
    try:
        return await reader.readexactly(_MAX_ANSWER)
    except asyncio.IncompleteReadError as e:  # the server closed: that was all
        return e.partial
