"""Per-container log files: written line by line with a timestamp, read back merged in order."""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

MAX_BYTES = 8 * 1024 * 1024  # one rotation keeps at most twice this per container
FOLLOW_POLL = 0.2


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LogWriter(threading.Thread):
    """Copies a process's output into its log file, a timestamp before each line.

    It reads on whatever happens to the file: a line that can't be written (a full disk) is
    counted and dropped, and the first line written after says how many were lost — a writer
    that stopped reading would leave the process blocked on a full pipe, and an app that
    serves would stop serving because its disk filled up."""

    def __init__(self, stream: IO[bytes], path: Path) -> None:
        super().__init__(name=f"log-{path.stem}", daemon=True)
        self.stream, self.path = stream, path
        self._out: IO[bytes] | None = None
        self.lost, self._why = 0, ""  # lines dropped since the last one written, and why
        self.start()

    def run(self) -> None:
        try:
            for line in iter(self.stream.readline, b""):
                try:
                    self._write(line)
                except OSError as e:
                    self.lost, self._why = self.lost + 1, e.strerror or str(e)
                    self._close()
        finally:
            self._close()
            self.stream.close()

    def _write(self, line: bytes) -> None:
        """Write ``line`` unbuffered (what raised was not written whole: counted once); the
        count of lines lost before it first, as a line of its own."""
        if self._out is not None and self._out.tell() > MAX_BYTES:
            self._close()
            self.path.replace(self.path.with_suffix(".log.1"))
        if self._out is None:
            self._out = self.path.open("ab", buffering=0)
        if self.lost:
            _write_all(self._out, f"{now()} paas: {self.lost} lines of output lost ({self._why})\n".encode())
            self.lost = 0
        _write_all(self._out, now().encode() + b" " + line.rstrip(b"\n") + b"\n")

    def _close(self) -> None:
        """Close the file (after a write that failed, to open it afresh for the next)."""
        out, self._out = self._out, None
        if out is not None:
            try:
                out.close()
            except OSError:
                pass


def _write_all(out: IO[bytes], data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[out.write(view) or 0 :]


def _split(raw: str, container: str) -> tuple[str, str]:
    stamp, _, text = raw.partition(" ")
    return stamp, f"{container} | {text}"


def _stamp(entry: tuple[str, str]) -> str:
    return entry[0]


def _tail(path: Path, lines: int) -> tuple[list[str], int]:
    """The last ``lines`` lines of a file and the offset just past what was read."""
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            end = f.tell()
            f.seek(max(0, end - max(lines, 1) * 400))
            data = f.read(end - f.tell())
    except OSError:
        return [], 0
    complete = data[: data.rfind(b"\n") + 1]
    text = complete.decode("utf-8", "replace").splitlines()
    return (text[-lines:] if lines else []), end - (len(data) - len(complete))


def follow_logs(
    logs_dir: Path, tail: int = 200, follow: bool = False, alive: Callable[[], bool] = lambda: True
) -> Iterator[str]:
    """Lines ``container | text``, oldest first; with ``follow``, new lines until ``alive()`` fails."""
    offsets: dict[Path, int] = {}
    batches = []
    for path in sorted(logs_dir.glob("*.log")):
        lines, offsets[path] = _tail(path, tail)
        batches.append([_split(line, path.stem) for line in lines])
    merged = list(heapq.merge(*batches, key=_stamp))
    for _, line in merged[-tail:] if tail else []:
        yield line
    while follow and alive():
        fresh: list[tuple[str, str]] = []
        for path in sorted(logs_dir.glob("*.log")):
            start = offsets.get(path, 0)
            try:
                size = path.stat().st_size
                if size < start:  # rotated
                    start = 0
                with path.open("rb") as f:
                    f.seek(start)
                    data = f.read()
            except OSError:
                continue
            complete = data[: data.rfind(b"\n") + 1]
            offsets[path] = start + len(complete)
            fresh.extend(_split(line, path.stem) for line in complete.decode("utf-8", "replace").splitlines())
        for _, line in sorted(fresh, key=_stamp):
            yield line
        if not fresh:
            time.sleep(FOLLOW_POLL)
