"""Passing a child's output through to ours, remembering its end for failure reports."""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from typing import BinaryIO

TAIL_LINES = 60  # gunicorn alone prints ~25 lines after an app's own traceback
CHUNK = 64 * 1024


class Output:
    """Copies a stream to ``sink`` as it arrives and keeps its last lines.

    Chunks are written unchanged (no prefix, no re-encoding) so the app's log
    lines reach the pod's log as the app wrote them.
    """

    def __init__(
        self, sink: BinaryIO | None = None, lines: int = TAIL_LINES, echo: bool = True
    ) -> None:
        self._sink = sink if sink is not None else sys.stdout.buffer
        self._echo = echo
        self._max = lines
        self._lines: deque[bytes] = deque(maxlen=lines)
        self._partial = b""

    async def pump(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(CHUNK):
            if self._echo:
                self._sink.write(chunk)
                self._sink.flush()
            self._remember(chunk)

    def _remember(self, chunk: bytes) -> None:
        *complete, self._partial = (self._partial + chunk).split(b"\n")
        self._lines.extend(complete)
        # A child that never prints a newline must not grow this without bound.
        self._partial = self._partial[-CHUNK:]

    def tail(self) -> str:
        lines = list(self._lines) + ([self._partial] if self._partial else [])
        return b"\n".join(lines[-self._max :]).decode("utf-8", "replace")
