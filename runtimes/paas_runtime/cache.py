"""Dependency caches: each built once per content hash and shared by every revision with it."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger(__name__)


async def build_once(path: Path, fill: Callable[[Path], Awaitable[None]], what: str) -> None:
    """Fill a fresh directory beside ``path``, then publish it as ``path`` with one atomic symlink.

    A symlink, not a rename: installed trees can't move (a venv's scripts carry its absolute
    path). Supervisors sharing the cache may race; the first to publish wins, the others
    discard their build. A failed fill leaves nothing behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():  # published once, its build since deleted
        path.unlink(missing_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{path.name[:16]}.", dir=path.parent))
    try:
        await fill(build)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, build, True)
        raise
    try:
        os.symlink(build.name, path)
    except FileExistsError:
        log.info("%s %s was built by another supervisor meanwhile", what, path.name[:12])
        await asyncio.to_thread(shutil.rmtree, build, True)
