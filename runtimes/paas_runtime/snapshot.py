"""A private copy of each revision's files, so git-sync can delete its worktree at will.

git-sync (ours and upstream's alike) removes the previous worktree right
after it swaps the link. The instance still serving that revision keeps
running while the new one builds and starts, and afterwards while it
drains: a static file, a template or a lazily imported module read from a
deleted worktree would fail exactly when a deploy is supposed to be
invisible. So every instance runs from a snapshot that only the supervisor
removes, once no instance of it can run again.

A snapshot is a tree of hard links (no file data is copied), falling back to
copies across file systems. It lives beside the link, on git-sync's volume::

    <dir of PAAS_APP_DIR>/.paas-revisions/<hash>.<rnd>/

which git-sync leaves alone (it only ever removes ``.git`` and ``.worktrees``).
The snapshot is also where the supervisor may add files of its own (the
node runtime's ``node_modules`` link) without writing into git-sync's tree.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

DIRNAME = ".paas-revisions"
#: Not content: git's pointer to its repository.
SKIP = frozenset({".git"})


def root_for(app_dir: Path) -> Path:
    return app_dir.parent / DIRNAME


def clear(root: Path) -> None:
    """Remove snapshots left by an earlier supervisor of this workspace (none of them runs)."""
    if root.is_dir():
        for entry in root.iterdir():
            remove(entry)


def take(worktree: Path, root: Path, name: str) -> Path:
    """Copy ``worktree`` into a new directory under ``root`` (hard links where possible).

    Raises OSError when the tree cannot be read or ``root`` cannot be written;
    the caller then runs the revision in place.
    """
    root.mkdir(parents=True, exist_ok=True)
    dest = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=root))
    try:
        _copy_tree(worktree, dest)
    except BaseException:
        remove(dest)
        raise
    os.chmod(dest, 0o755)  # mkdtemp's 0700 would hide it from an app run as another user
    return dest


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path):  # a file or a dangling link, not a tree
        try:
            os.unlink(path)
        except OSError as e:
            log.warning("cannot remove %s: %s", path, e)


def _copy_tree(src: Path, dest: Path) -> None:
    link_ok = True
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        target_dir = dest if rel == "." else dest / rel
        if rel == ".":
            dirnames[:] = [d for d in dirnames if d not in SKIP]
            filenames = [f for f in filenames if f not in SKIP]
        # os.walk lists symlinks to directories among dirnames without following them.
        for name in list(dirnames):
            source = os.path.join(dirpath, name)
            if os.path.islink(source):
                dirnames.remove(name)
                os.symlink(os.readlink(source), target_dir / name)
            else:
                os.mkdir(target_dir / name)
                shutil.copymode(source, target_dir / name)
        for name in filenames:
            source = os.path.join(dirpath, name)
            target = target_dir / name
            if os.path.islink(source):
                os.symlink(os.readlink(source), target)
                continue
            if link_ok:
                try:
                    os.link(source, target)
                    continue
                except OSError as e:
                    if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                        raise
                    link_ok = False
            shutil.copy2(source, target)
