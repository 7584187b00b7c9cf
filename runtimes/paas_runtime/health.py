"""Asking a starting app instance whether it is ready for traffic."""

from __future__ import annotations

import asyncio
import contextlib

#: How long one probe may take; a slow first response is retried, not fatal.
PROBE_TIMEOUT = 2.0


async def probe(port: int, path: str, timeout: float = PROBE_TIMEOUT) -> int | None:
    """GET ``path`` on the loopback ``port``: the HTTP status, or None if there is no answer.

    Only the status line is read, so any response body (or a streaming one) is fine.
    """
    try:
        return await asyncio.wait_for(_status(port, path), timeout)
    except (OSError, TimeoutError, ValueError, IndexError):
        return None


async def _status(port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "User-Agent: paas-runtime-healthcheck\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        status_line = await reader.readline()
        return int(status_line.split()[1])
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
