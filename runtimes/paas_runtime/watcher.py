"""Following the revision link that git-sync swaps.

git-sync publishes a revision by renaming a new symlink over the old one, so
the link's *target* is the signal: file events inside the worktree say nothing
about which revision is complete. One ``readlink`` per poll is cheap enough to
run every 100 ms.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.1


@dataclass(frozen=True)
class Revision:
    """One checked-out revision: its worktree (resolved) and its commit hash."""

    path: Path
    hash: str


def read_link(link: Path) -> Revision | None:
    """The revision ``link`` points at now, or None while there is none (yet).

    A plain directory is accepted as a single, never-changing revision, which
    is handy for running the supervisor by hand on a checkout.
    """
    try:
        target = os.readlink(link)
    except FileNotFoundError:
        return None
    except OSError:  # not a symlink
        if not link.is_dir():
            return None
        path = link.resolve()
        return Revision(path=path, hash=path.name)
    # Resolve the target we read, not the link again: it may be swapped in between.
    path = Path(os.path.realpath(os.path.join(link.parent, target)))
    if not path.is_dir():  # dangling for a moment: wait for the worktree
        return None
    return Revision(path=path, hash=os.path.basename(target.rstrip("/")))


async def watch(link: Path, stop: asyncio.Event) -> AsyncIterator[Revision]:
    """Yield each revision ``link`` points at, once per change, until ``stop`` is set."""
    current: Revision | None = None
    waiting_logged = False
    while not stop.is_set():
        revision = read_link(link)
        if revision is None:
            if current is None and not waiting_logged:
                log.info("waiting for %s to point at a revision", link)
                waiting_logged = True
        elif revision != current:
            current = revision
            yield revision
        try:
            await asyncio.wait_for(stop.wait(), POLL_INTERVAL)
        except TimeoutError:
            pass
