"""Reading a revision's own files, never through a symlink that leaves the revision.

A repository may hold a symlink to any path (``requirements.txt -> /data/token``). What the
build reads from a file it may well print — pip quotes the line it cannot parse — and the
failure reason goes on to the push's output, the releases, the API and the console. So
the files the runtime reads of a revision (its requirements, package.json, lockfiles, the
Procfile) are read only where they resolve inside the revision, and a link out of it fails
the build with one sentence naming the link, never showing what it leads to. Links that
stay inside the revision work as they always did.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import BuildFailed


def inside(root: Path | str, path: Path | str) -> bool:
    """Whether ``path``, every symlink on the way followed, is ``root`` or under it."""
    base, real = os.path.realpath(root), os.path.realpath(path)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def checked(root: Path, name: str) -> Path:
    """``root/name``; raises BuildFailed if it resolves outside ``root`` (a symlink leaving it)."""
    path = root / name
    if not inside(root, path):
        target = os.readlink(path) if path.is_symlink() else os.path.realpath(path)
        raise BuildFailed(
            f"{name} is a symlink to a path outside the app ({target}): commit the file itself, "
            "or a link to a file inside the repository"
        )
    return path


def read(root: Path, name: str) -> bytes | None:
    """The bytes of the revision's file ``name``, None if it has none (or a directory of
    that name); raises BuildFailed for a symlink out of the revision."""
    try:
        return checked(root, name).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
