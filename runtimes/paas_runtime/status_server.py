"""The supervisor's status endpoint: `GET /status` answers its state as JSON; `PUT /settings`
takes new live settings (`paas_runtime.live`).

On a port of the pod's own (`PAAS_STATUS_BIND`, never published): the control plane reads
it through the backend. A tiny HTTP/1.0-style server on the supervisor's event loop, one
request per connection — it has one reader, polling about once a second.

Both routes want the pod's credential (`paas_runtime.credential`) when one is configured;
without one, `GET /status` stays open (a runtime run by hand) and `PUT /settings` is refused
outright: settings carry the command the supervisor runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from . import credential

log = logging.getLogger(__name__)
MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024


UNAUTHORIZED = {"error": "this endpoint needs the pod's credential (Authorization: Bearer, PAAS_STATUS_TOKEN_FILE)"}
NO_SETTINGS = {"error": "this runtime takes no settings over the network: it was given no credential (PAAS_STATUS_TOKEN_FILE)"}


async def serve(
    bind: str,
    report: Callable[[], dict[str, Any]],
    apply: Callable[[Any], dict[str, Any]],
    secret: bytes | None = None,
) -> asyncio.Server:
    """Serve ``report()`` at ``GET /status`` and ``apply(json)`` at ``PUT /settings`` on
    ``bind`` (``HOST:PORT``), to requests carrying ``secret`` (the pod's credential)."""
    host, _, port = bind.rpartition(":")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            lines = head.decode("latin-1").split("\r\n")
            method, path, *_ = lines[0].split() + ["", ""]
            headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
            length = int(headers.get("content-length") or 0)
            data = await asyncio.wait_for(reader.readexactly(length), 5) if 0 < length <= MAX_BODY_BYTES else b""
            route = path.partition("?")[0]
            known = (method, route) in (("GET", "/status"), ("PUT", "/settings"))
            extra = ""
            if known and secret is None and route == "/settings":
                status, body = "403 Forbidden", json.dumps(NO_SETTINGS).encode()
            elif known and not credential.allows(secret, headers.get("authorization")):
                status, body = "401 Unauthorized", json.dumps(UNAUTHORIZED).encode()
                extra = "WWW-Authenticate: Bearer\r\n"
            elif method == "GET" and route == "/status":
                status, body = "200 OK", json.dumps(report()).encode()
            elif method == "PUT" and route == "/settings":
                try:
                    status, body = "200 OK", json.dumps(apply(json.loads(data or b"null"))).encode()
                except (ValueError, TypeError) as e:
                    status, body = "400 Bad Request", json.dumps({"error": str(e)}).encode()
            else:
                status, body = "404 Not Found", b'{"error": "GET /status and PUT /settings are served here"}'
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host.strip("[]") or None, int(port), limit=MAX_HEADER_BYTES)
    log.info("status endpoint on %s", bind)
    return server
