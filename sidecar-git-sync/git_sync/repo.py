"""The on-disk layout and the git operations of one sync.

Layout, as upstream v4:

    ROOT/.git                   the repository (`git init`, remote `origin` = --repo)
    ROOT/.worktrees/<hash>      one detached worktree per published commit
    ROOT/LINK -> .worktrees/<hash>   relative symlink, replaced atomically

A sync is `git fetch origin <ref>`, `git rev-parse FETCH_HEAD^{}`, and for a
new hash `git worktree add` plus a symlink rename: nothing else sits between a
push and the link moving. Removing the old worktree, pruning and gc happen in
`cleanup`, after callers have been told.
"""

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from git_sync.auth import Credentials
from git_sync.errors import FetchError, SyncError
from git_sync.git import Git
from git_sync.logs import LOG, V

WORKTREES = ".worktrees"

_GC_ARGS = {
    "auto": ["gc", "--auto", "--quiet"],
    "always": ["gc", "--quiet"],
    "aggressive": ["gc", "--aggressive", "--quiet"],
}


@dataclass(frozen=True)
class SyncResult:
    hash: str
    changed: bool


class Repo:
    """One repository under `root`, published at `link`. Not thread-safe: one caller syncs."""

    def __init__(
        self,
        git: Git,
        root: Path,
        link: Path,
        url: str,
        ref: str,
        depth: int,
        credentials: Credentials | None = None,
        gc: str = "auto",
        on_fetch: Callable[[], None] = lambda: None,
    ) -> None:
        self._git = git
        self.root = root
        self.link = link
        self._url = url
        self._ref = ref
        self._depth = depth
        self._credentials = credentials
        self._gc = gc
        self._on_fetch = on_fetch
        self._gitdir = root / ".git"
        self._worktrees = root / WORKTREES
        self.current = ""
        self._needs_cleanup = True

    def init(self, deadline: float) -> None:
        """Make `root` a usable repository, reusing what a previous run left there.

        Only what git-sync owns (`.git`, `.worktrees`) is ever removed: ROOT may be
        a volume shared with other containers.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        for lock in self._gitdir.glob("*.lock"):  # left by a git killed mid-command
            lock.unlink(missing_ok=True)
        if self._gitdir.is_dir() and not self._is_repo_root(deadline):
            LOG.info("%s is not a usable repository; re-initialising it", self._gitdir)
            shutil.rmtree(self._gitdir)
        if not self._gitdir.is_dir():
            self._git("init", "--quiet", "--initial-branch=git-sync", deadline=deadline)
        self._git("config", "remote.origin.url", self._url, deadline=deadline)
        self._worktrees.mkdir(exist_ok=True)
        self.current = self._linked_hash()

    def sync(self, deadline: float) -> SyncResult:
        """Fetch --ref and, if its commit is new, publish it at the link."""
        remote_env = self._credentials.git_env(os.environ) if self._credentials else None
        fetch = ["fetch", "--no-tags", "--no-progress", "--no-auto-gc"]
        if self._depth:
            fetch += ["--depth", str(self._depth)]
        elif (self._gitdir / "shallow").exists():
            fetch.append("--unshallow")
        self._on_fetch()
        self._git(*fetch, "origin", self._ref, env=remote_env, error=FetchError,
                  deadline=deadline)
        # ^{} peels an annotated tag to its commit.
        commit = self._git("rev-parse", "FETCH_HEAD^{}", deadline=deadline).strip()
        if commit == self.current and (self._worktree(commit) / ".git").is_file():
            return SyncResult(commit, changed=False)
        self._add_worktree(commit, deadline)
        self._publish(commit)
        self.current = commit
        self._needs_cleanup = True
        return SyncResult(commit, changed=True)

    def cleanup(self, deadline: float) -> None:
        """Remove every worktree but the current one, and collect garbage."""
        if not self._needs_cleanup or not self.current:
            return
        stale = [d for d in self._worktrees.iterdir() if d.name != self.current]
        for path in stale:
            LOG.log(V(1), "removing worktree %s", path.name)
            _remove(path)
        if stale:
            self._git("worktree", "prune", deadline=deadline)
        # A ref at the published commit lets the next fetch say what it already has.
        self._git("update-ref", "HEAD", self.current, deadline=deadline)
        if self._gc in _GC_ARGS:
            self._git("-c", "gc.autoDetach=false", "-c", "gc.pruneExpire=now",
                      *_GC_ARGS[self._gc], deadline=deadline)
        self._needs_cleanup = False

    def _worktree(self, commit: str) -> Path:
        return self._worktrees / commit

    def _add_worktree(self, commit: str, deadline: float) -> None:
        path = self._worktree(commit)
        if os.path.lexists(path):
            LOG.info("removing leftover worktree %s", path)
            _remove(path)
        # --force: the directory may be gone while git still has it registered.
        self._git("worktree", "add", "--force", "--detach", str(path), commit, deadline=deadline)
        _relativise_gitdir(path)

    def _publish(self, commit: str) -> None:
        """Point the link at the commit's worktree by renaming a new symlink over it."""
        target = os.path.relpath(self._worktree(commit), self.link.parent)
        tmp = self.link.with_name(f".{self.link.name}.tmp")
        try:
            self.link.parent.mkdir(parents=True, exist_ok=True)
            tmp.unlink(missing_ok=True)
            os.symlink(target, tmp)
            os.replace(tmp, self.link)
        except OSError as e:
            raise SyncError(f"can't publish {self.link}: {e.strerror}") from None

    def _linked_hash(self) -> str:
        """The commit the link points at, if it points into our worktrees."""
        try:
            target = self.link.parent / os.readlink(self.link)
        except OSError:
            return ""
        if Path(os.path.normpath(target)).parent != self._worktrees:
            return ""
        return target.name

    def _is_repo_root(self, deadline: float) -> bool:
        try:
            top = self._git("rev-parse", "--show-toplevel", deadline=deadline).strip()
        except SyncError:
            return False
        return Path(top) == self.root


def _relativise_gitdir(worktree: Path) -> None:
    """Make the worktree's `.git` pointer relative, so the volume can be mounted elsewhere."""
    dotgit = worktree / ".git"
    gitdir = Path(dotgit.read_text().removeprefix("gitdir:").strip())
    dotgit.write_text(f"gitdir: {os.path.relpath(gitdir, worktree)}\n")


def _remove(path: Path) -> None:
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path)
    except OSError as e:
        raise SyncError(f"can't remove {path}: {e.strerror}") from None
