"""Handing an instance its slot of the public port, and talking to the adapter that takes it.

An instance is started with its slot's listening socket inherited and
``PAAS_LISTEN_FD`` naming it, plus one end of a socket pair, ``PAAS_CONTROL_FD``.
An app cannot know what to do with either, so a small *adapter* loaded into the
app's own process does it: ``adapters/gunicorn_handoff.py`` (imported by a
``.pth`` file in the venv) for gunicorn, ``adapters/node_handoff.js`` (loaded
with ``NODE_OPTIONS=--require``) for Node.js servers. The adapter makes the
server accept on the slot as well as on ``$PORT`` and says so on the control
channel, one line each way:

``listening``
    adapter → supervisor: the server also accepts on the slot.
``declined <why>``
    adapter → supervisor: it will not take the slot; traffic goes through the proxy.
``retire``
    supervisor → adapter, at the switch: traffic has left; let kept-alive
    clients go (Node.js: each one's next request is forwarded to the public
    port, and answered with ``Connection: close``).

The supervisor sees for itself when a retired instance is done: no process of
its group holds a connection on the public port any more
(:func:`paas_runtime.process.connections`).

An instance whose adapter has not said ``listening`` by the time it is healthy
(an app that is not gunicorn or Node.js, or that binds ports its own way) is
served through the proxy, as every instance would be without handoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from pathlib import Path

log = logging.getLogger(__name__)

ADAPTERS = Path(__file__).parent / "adapters"
GUNICORN_ADAPTER = ADAPTERS / "gunicorn_handoff.py"
NODE_ADAPTER = ADAPTERS / "node_handoff.js"
MAX_LINE = 4096


class Channel:
    """The supervisor's end of one instance's control socket pair."""

    def __init__(self) -> None:
        self._ours, self.theirs = socket.socketpair()
        self._ours.setblocking(False)
        self.listening = False
        self._reader: asyncio.Task[None] | None = None

    def started(self) -> None:
        """The instance has its end: close ours of it and start listening to the adapter."""
        self.theirs.close()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        pending = b""
        while True:
            try:
                data = await loop.sock_recv(self._ours, 4096)
            except OSError:
                data = b""
            if not data:  # every process holding the other end is gone
                return
            pending += data
            *lines, pending = pending.split(b"\n")
            pending = pending[-MAX_LINE:]  # the app's own process writes here: bound what it can make us keep
            for line in lines:
                self._hear(line.decode(errors="replace").strip())

    def _hear(self, line: str) -> None:
        word, _, rest = line.partition(" ")
        if word == "listening":
            self.listening = True
        elif word == "declined":
            log.info("the app's adapter declined the public port (%s); serving it through the proxy", rest)

    def tell(self, word: str) -> None:
        """Send one line now (a few bytes into an empty socket buffer: it never has to wait)."""
        with contextlib.suppress(OSError):
            self._ours.send(word.encode() + b"\n")

    def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        self.theirs.close()
        self._ours.close()
