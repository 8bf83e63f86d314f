"""Posting a paste to the paste service (``PBOTVM_PASTE_URL``), as the original posted to 0x0.st:
one multipart/form-data field ``file``; the answer is the paste's URL (the response body,
trimmed) or one ``error pasting: ...`` line.

Redirects are followed as the original's LWP did: 301, 307 and 308 repeat the POST at the new
address, 302 and 303 fetch the answer there.
"""

from __future__ import annotations

import asyncio
import http.client
import secrets
import urllib.error
import urllib.parse
import urllib.request
from typing import IO
from urllib.request import Request

from pbotvm.tokenizer import PERL_SPACE

TIMEOUT = 10.0
FIELD = "file"
FILENAME = "filename"
# An honest client name: 0x0.st refused the original's browser-like "Mozilla/5.0" (403).
USER_AGENT = "pbotvm (pbot-vm)"
_MAX_ANSWER = 64 * 1024  # a URL is short; more is not read


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


class _RedirectPost(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Request, fp: IO[bytes], code: int, msg: str,
                         headers: http.client.HTTPMessage, newurl: str) -> Request | None:
        if code in (301, 307, 308) and req.get_method() == "POST":
            return Request(newurl, data=req.data, headers=req.headers, method="POST")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def post(data: bytes, url: str, timeout: float = TIMEOUT) -> str:
    """Upload ``data``; the paste's URL or the one-line error (blocking)."""
    body, content_type = form_data(data)
    request = Request(
        url, data=body, method="POST",
        headers={"Content-Type": content_type, "User-Agent": USER_AGENT})
    host = urllib.parse.urlsplit(url).netloc
    opener = urllib.request.build_opener(_RedirectPost)
    try:
        with opener.open(request, timeout=timeout) as response:
            answer = response.read(_MAX_ANSWER).decode("utf-8", "replace").strip(PERL_SPACE)
    except urllib.error.HTTPError as e:
        return f"error pasting: {e.code} {e.reason}"
    except urllib.error.URLError as e:
        if isinstance(e.reason, TimeoutError):
            return _timed_out(host, timeout)
        reason = e.reason.strerror if isinstance(e.reason, OSError) else None
        return f"error pasting: cannot connect to {host} ({reason or e.reason})"
    except TimeoutError:
        return _timed_out(host, timeout)
    except (OSError, http.client.HTTPException) as e:
        return f"error pasting: {host}: {e or type(e).__name__}"
    return answer or f"error pasting: {host} answered no URL"


def _timed_out(host: str, timeout: float) -> str:
    return f"error pasting: no answer from {host} within {timeout:g} s"


async def upload(data: bytes, url: str, timeout: float = TIMEOUT) -> str:
    """``post`` without blocking the event loop, bounded by ``timeout`` in all (the socket
    time-out bounds each step only)."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(post, data, url, timeout), timeout)
    except TimeoutError:
        return _timed_out(urllib.parse.urlsplit(url).netloc, timeout)

