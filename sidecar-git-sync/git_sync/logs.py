"""Logging: one line per event on stderr, URL credentials redacted.

Verbosity works like upstream's `-v N`: a message logged at `V(n)` shows when
N >= n. V(0) is INFO, so warnings and errors always show.
"""

import logging
import sys

from git_sync.auth import redact

LOG = logging.getLogger("git_sync")


def V(level: int) -> int:  # noqa: N802 - named after upstream's log.V(n)
    return logging.INFO - level


class _OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = "error: " if record.levelno >= logging.ERROR else ""
        line = f"git-sync: {prefix}{redact(record.getMessage())}"
        if record.exc_info:  # only for bugs: expected failures are logged without one
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


def setup(verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter())
    LOG.handlers[:] = [handler]
    LOG.setLevel(V(max(verbose, 0)))
    LOG.propagate = False
