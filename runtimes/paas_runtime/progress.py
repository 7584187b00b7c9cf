"""What a deploy is doing, step by step, for the person who pushed it.

The supervisor opens a :func:`reporting` scope around each deploy; code anywhere
below it (a runtime's build, the start, the health check) calls :func:`say`, which
logs the line and hands it to that deploy's reporter. A context variable carries
the reporter, so concurrent deploys and restarts never mix their steps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

log = logging.getLogger("paas_runtime")
_reporter: ContextVar[Callable[[str], None] | None] = ContextVar("reporter", default=None)


def say(text: str) -> None:
    """Log ``text`` and, inside a deploy, record it as one of its steps."""
    log.info("%s", text)
    reporter = _reporter.get()
    if reporter is not None:
        reporter(text)


@contextmanager
def reporting(reporter: Callable[[str], None]) -> Iterator[None]:
    token = _reporter.set(reporter)
    try:
        yield
    finally:
        _reporter.reset(token)
