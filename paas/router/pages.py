"""The router's own answers: small HTML pages (every value escaped, nothing runs) and the
TLS alert for a name it can't serve securely."""

from __future__ import annotations

from html import escape

# A fatal TLS alert, unrecognized_name (RFC 6066 §3): no app here answers TLS for that name.
UNRECOGNIZED_NAME = b"\x15\x03\x01\x00\x02\x02\x70"

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
