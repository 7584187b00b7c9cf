"""Logging: one line per event on stderr, URL credentials redacted; the --error-file.

Verbosity works like upstream's `-v N`: a message logged at `V(n)` shows when
N >= n. V(0) is INFO, so warnings and errors always show.

As upstream, every error is also written to the --error-file (when set) as
JSON `{"Msg": …, "Err": …, "Args": {…}}`, replaced atomically, and the file
is removed after the next successful sync.
"""

import json
import logging
import os
import sys
import threading
from pathlib import Path

from git_sync.auth import redact

LOG = logging.getLogger("git_sync")
_error_file: Path | None = None


def V(level: int) -> int:  # noqa: N802 - named after upstream's log.V(n)
    return logging.INFO - level


class _OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = {logging.ERROR: "error: ", logging.WARNING: "warning: "}.get(record.levelno, "")
        line = f"git-sync: {prefix}{redact(record.getMessage())}"
        if record.exc_info:  # only for bugs: expected failures are logged without one
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


def setup(verbose: int, error_file: Path | None = None) -> None:
    global _error_file
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter())
    LOG.handlers[:] = [handler]
    LOG.setLevel(V(max(verbose, 0)))
    LOG.propagate = False
    _error_file = error_file


def error(msg: str, err: object = None, **args: object) -> None:
    """Log `msg: err` as one line, and record it in the --error-file."""
    LOG.error(f"{msg}: {err}" if err is not None else msg)
    if _error_file is None:
        return
    payload = {"Msg": redact(msg), "Err": redact(str(err)) if err is not None else "",
               "Args": {k: redact(v) if isinstance(v, str) else v for k, v in args.items()}}
    try:
        _write_atomically(_error_file, json.dumps(payload) + "\n")
    except OSError as e:
        LOG.error("can't write --error-file %s: %s", _error_file, e.strerror)


def clear_error_file() -> None:
    """Remove the --error-file: the last sync succeeded."""
    if _error_file is None:
        return
    try:
        _error_file.unlink(missing_ok=True)
    except OSError as e:
        LOG.error("can't remove --error-file %s: %s", _error_file, e.strerror)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
