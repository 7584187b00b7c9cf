"""Following several containers' logs at once: each source read by a thread of its own, its
lines yielded as they come, until every source has ended."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator

Source = Callable[[], Iterator[str]]


def merge(sources: list[Source]) -> Iterator[str]:
    """The lines of every source as they come (a source ends quietly on its own errors)."""
    lines: queue.Queue[str | None] = queue.Queue(maxsize=10_000)

    def pump(source: Source) -> None:
        try:
            for line in source():
                lines.put(line)
        finally:
            lines.put(None)

    for source in sources:
        threading.Thread(target=pump, args=(source,), daemon=True).start()
    open_sources = len(sources)
    while open_sources:
        item = lines.get()
        if item is None:
            open_sources -= 1
        else:
            yield item


def lines_of(chunks: Iterable[bytes]) -> Iterator[str]:
    """Complete lines (decoded, without their newline) from a stream of byte chunks."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            yield raw.decode("utf-8", "replace")
