"""The router's own answers: small HTML pages (every value escaped, nothing runs) and the
TLS alerts for a name it can't serve securely or a ClientHello it can't read."""

from __future__ import annotations

from html import escape
from http import HTTPStatus

# Fatal TLS alerts: unrecognized_name (RFC 6066 §3): no app here answers TLS for that name;
# decode_error (RFC 8446 §6.2): what should be a ClientHello is not one, or is too large.
UNRECOGNIZED_NAME = b"\x15\x03\x01\x00\x02\x02\x70"
DECODE_ERROR = b"\x15\x03\x01\x00\x02\x02\x32"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1><p>{text}</p></body></html>
"""


def page(status: str, title: str, text: str, retry_after: int | None = None) -> bytes:
    body = _PAGE.format(title=escape(title), text=escape(text)).encode()
    headers = [
        f"HTTP/1.1 {status}",
        "Content-Type: text/html; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Content-Security-Policy: default-src 'none'",
        "X-Content-Type-Options: nosniff",
        "Cache-Control: no-store",
        "Connection: close",
        *([f"Retry-After: {retry_after}"] if retry_after is not None else []),
    ]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def unknown_host(host: str, domain: str) -> bytes:
    return page("404 Not Found", "No app here",
                f"No app is served at {host}. Apps are served at NAME.{domain}: `paas list` shows them.")


def not_serving(host: str, app: str) -> bytes:
    return page("503 Service Unavailable", f"{app} is not serving yet",
                f"The app {app} ({host}) exists but no release of it serves yet: deploy it with git push, "
                f"see `paas status {app}`, and try again in a moment.",
                retry_after=2)


def no_host() -> bytes:
    return page("400 Bad Request", "No host name", "The request names no Host: the router serves apps by host name.")


def refused(status: int, reason: str) -> bytes:
    """The answer to a request the router could not read (400, 431, 501), naming why."""
    phrase = HTTPStatus(status).phrase
    return page(f"{status} {phrase}", phrase, f"The router could not pass this request on: {reason}.")


def timed_out(seconds: float) -> bytes:
    return page("408 Request Timeout", "Request timeout",
                f"The request's head did not arrive whole within {seconds:g} seconds.")
