"""The supervisor's status endpoint: `GET /status` answers its state as JSON; `PUT /settings`
takes new live settings (`paas_runtime.live`).

On a port of the pod's own (`PAAS_STATUS_BIND`, never published): the control plane reads
it through the backend. A tiny HTTP/1.0-style server on the supervisor's event loop, one
request per connection — it has one reader, polling about once a second.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024


async def serve(
    bind: str, report: Callable[[], dict[str, Any]], apply: Callable[[Any], dict[str, Any]]
) -> asyncio.Server:
    """Serve ``report()`` at ``GET /status`` and ``apply(json)`` at ``PUT /settings`` on
    ``bind`` (``HOST:PORT``)."""
    host, _, port = bind.rpartition(":")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            lines = head.decode("latin-1").split("\r\n")
            method, path, *_ = lines[0].split() + ["", ""]
            length = next((int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("content-length:")), 0)
            data = await asyncio.wait_for(reader.readexactly(length), 5) if 0 < length <= MAX_BODY_BYTES else b""
            route = path.partition("?")[0]
            if method == "GET" and route == "/status":
                status, body = "200 OK", json.dumps(report()).encode()
            elif method == "PUT" and route == "/settings":
                try:
                    status, body = "200 OK", json.dumps(apply(json.loads(data or b"null"))).encode()
                except (ValueError, TypeError) as e:
                    status, body = "400 Bad Request", json.dumps({"error": str(e)}).encode()
            else:
                status, body = "404 Not Found", b'{"error": "GET /status and PUT /settings are served here"}'
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
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
