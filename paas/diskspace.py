"""Room on the data directory: the store, the hosted repositories and (on the local backend)
the pods' workspaces all write there, so a full disk must be said in one sentence — by a
push, the API, the store — not waited on: a deploy that can't write never ends by itself.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from paas.errors import PaasError

MB = 1024 * 1024
# The errors a write to a full filesystem ends with (EDQUOT: a user's quota is full).
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(PaasError):
    status = 507  # Insufficient Storage (RFC 4918)

    @property
    def reason(self) -> str:
        """As a release's reason: the sentence, then what to do (the lines a push shows)."""
        return "\n".join([self.message, *self.details])


def free_mb(path: Path) -> int:
    """Megabytes an unprivileged writer may still use on ``path``'s filesystem (f_bavail)."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize // MB


def no_space(path: Path, minimum_mb: int = 0) -> DiskFull:
    """The sentence for a data directory that can't take a write (or a deploy) now."""
    try:
        free = free_mb(path)
    except OSError:
        free = 0
    needs = f"; a deploy needs {minimum_mb} MB (PAAS_MIN_FREE_MB)" if minimum_mb else ""
    return DiskFull(
        f"no space left on the data directory ({free} MB free)",
        [f"{path} has {free} MB free{needs}: free some space there and try again"],
    )


def is_full(error: BaseException) -> bool:
    """Whether ``error`` is a write refused by a full filesystem (an OSError, or SQLite's)."""
    if isinstance(error, OSError):
        return error.errno in FULL_ERRNOS
    return isinstance(error, sqlite3.Error) and getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


@dataclass(frozen=True)
class Room:
    """What a deploy needs of the data directory: ``minimum_mb`` free."""

    path: Path
    minimum_mb: int

    def shortage(self) -> DiskFull | None:
        """Why a deploy can't start or go on now (too little room), or None."""
        try:
            short = free_mb(self.path) < self.minimum_mb
        except OSError:  # the directory itself is gone or unreadable: not a question of room
            return None
        return no_space(self.path, self.minimum_mb) if short else None
