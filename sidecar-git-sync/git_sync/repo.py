"""The on-disk layout and the git operations of one sync.

Layout, as upstream v4:

    ROOT/.git                   the repository (`git init`, remote `origin` = --repo)
    ROOT/.worktrees/<hash>      one detached worktree per published commit
    ROOT/LINK -> .worktrees/<hash>   relative symlink, replaced atomically

A sync is `git fetch origin <ref>`, `FETCH_HEAD^{}`, and for a
new hash `git worktree add` (plus `git submodule update` when the commit has
submodules) and a symlink rename: nothing else sits between a push and the
link moving. Removing old worktrees, pruning and gc happen in `cleanup`,
after callers have been told. With --stale-worktree-timeout a worktree the
link moved away from stays that long, so a consumer still running from it
(the paas runtime drains the old app version there) keeps its files.
"""

import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from git_sync.auth import Credentials
from git_sync.errors import FetchError, GitError, SyncError
from git_sync.git import Git
from git_sync.logs import LOG, V

WORKTREES = ".worktrees"
_OBJECT_ID = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")

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
        submodules: str = "recursive",
        stale_timeout: float = 0.0,
        filter: str = "",
        sparse_checkout_file: str = "",
        before_publish: Callable[[str], None] = lambda commit: None,
    ) -> None:
        """`filter`: a partial clone's object filter (`blob:none`): fetches leave out what
        it names, and checking a commit out fetches the missing blobs it needs.
        `sparse_checkout_file`: patterns of what to check out of each commit, read for each
        new one. `before_publish(hash)` is called once a new commit's worktree is ready,
        right before the link moves to it."""
        self._git = git
        self.root = root
        self.link = link
        self._url = url
        self._ref = ref
        self._depth = depth
        self._credentials = credentials
        self._gc = gc
        self._sparse_checkout_file = sparse_checkout_file
        self._before_publish = before_publish
        self._submodules = submodules
        self._stale_timeout = stale_timeout
        self._filter = filter
        self._gitdir = root / ".git"
        self._worktrees = root / WORKTREES
        self.current = ""
        self._needs_cleanup = True
        self._stale_since: dict[str, float] = {}  # worktree -> when the link left it

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
        if self._filter:  # origin is a promisor remote: git fetches missing objects from it
            self._git("config", "remote.origin.promisor", "true", deadline=deadline)
            self._git("config", "remote.origin.partialclonefilter", self._filter, deadline=deadline)
        else:
            for key in ("remote.origin.promisor", "remote.origin.partialclonefilter"):
                self._git("config", "--unset-all", key, deadline=deadline, check=False)
        self._worktrees.mkdir(exist_ok=True)
        self.current = self._linked_hash()

    def worktree(self, commit: str) -> Path:
        return self._worktrees / commit

    def sync(self, deadline: float) -> SyncResult:
        """Fetch --ref and, if its commit is new (or its worktree broken), publish it at the link."""
        remote_env = self._credentials.git_env(self._git.env) if self._credentials else None
        fetch = ["fetch", "--no-tags", "--no-progress", "--no-auto-gc"]
        if self._filter:
            fetch.append(f"--filter={self._filter}")
        if self._depth:
            fetch += ["--depth", str(self._depth)]
        elif (self._gitdir / "shallow").exists():
            fetch.append("--unshallow")
        try:
            self._git(*fetch, "origin", self._ref, env=remote_env, error=FetchError, deadline=deadline)
        except FetchError as e:
            raise self._explained(e, remote_env, deadline) from None
        commit = self._fetched_commit(deadline)
        if commit == self.current and self._worktree_ok(commit):
            return SyncResult(commit, changed=False)
        self._add_worktree(commit, remote_env, deadline)
        self._before_publish(commit)
        self._publish(commit)
        self.current = commit
        self._needs_cleanup = True
        return SyncResult(commit, changed=True)

    def _explained(self, error: FetchError, remote_env: dict[str, str] | None, deadline: float) -> FetchError:
        """A missing ref is told apart from a repository that has nothing at all yet."""
        if "couldn't find remote ref" not in str(error):
            return error
        try:
            refs = self._git("ls-remote", "origin", env=remote_env, deadline=deadline)
        except GitError:
            return error
        if refs.strip():
            return error
        return FetchError(f"the repository is empty: it has no commits yet ({error})")

    def _fetched_commit(self, deadline: float) -> str:
        """`FETCH_HEAD^{}`: the fetched commit, an annotated tag peeled to its commit.

        When FETCH_HEAD already names a commit (a branch, the remote's HEAD, a commit
        hash) it is read from the file: no git process between a push and the link.
        """
        try:
            oid, _, rest = (self._gitdir / "FETCH_HEAD").read_text().partition("\t")
        except OSError:
            oid = rest = ""
        description = rest.lstrip("\t")  # after the (empty) not-for-merge column
        if _OBJECT_ID.fullmatch(oid) and (self._ref in ("HEAD", oid)
                                          or description.startswith("branch '")):
            return oid
        return self._git("rev-parse", "FETCH_HEAD^{}", deadline=deadline).strip()

    def cleanup(self, deadline: float) -> float | None:
        """Remove worktrees the link left long enough ago, and collect garbage.

        Returns when (wall-clock time) the next stale worktree is due, if any is kept.
        """
        if not self.current:
            return None
        now = time.time()
        removed = False
        next_due: float | None = None
        for path in self._worktrees.iterdir():
            if path.name == self.current:
                continue
            if self._stale_timeout > 0:
                due = self._stale_since_time(path) + self._stale_timeout
                if due > now:
                    next_due = due if next_due is None else min(next_due, due)
                    continue
            LOG.log(V(1), "removing worktree %s", path.name)
            _remove(path)
            self._stale_since.pop(path.name, None)
            removed = True
        if removed:
            self._git("worktree", "prune", deadline=deadline)
        if self._needs_cleanup:
            # A ref at the published commit lets the next fetch say what it already has.
            self._git("update-ref", "HEAD", self.current, deadline=deadline)
            if self._gc in _GC_ARGS:
                self._git(*_GC_ARGS[self._gc], deadline=deadline)
            self._needs_cleanup = False
        return next_due

    def _stale_since_time(self, path: Path) -> float:
        """When the link left `path`: remembered, else (from an earlier run) its mtime."""
        if path.name not in self._stale_since:
            try:
                self._stale_since[path.name] = path.lstat().st_mtime
            except FileNotFoundError:
                return 0.0
        return self._stale_since[path.name]

    def _worktree_ok(self, commit: str) -> bool:
        """The worktree's git metadata exists and has the commit checked out (no git run)."""
        path = self.worktree(commit)
        try:
            gitdir = (path / ".git").read_text().removeprefix("gitdir:").strip()
            head = (path / gitdir / "HEAD").read_text().strip()
        except OSError:
            return False
        return head == commit

    def _add_worktree(self, commit: str, remote_env: dict[str, str] | None,
                      deadline: float) -> None:
        path = self.worktree(commit)
        if os.path.lexists(path):
            LOG.info("removing leftover or broken worktree %s", path)
            _remove(path)
        # --force: the directory may be gone while git still has it registered. In a partial
        # clone the checkout fetches the blobs it lacks: it talks to the remote.
        checkout_env = remote_env if self._filter else None
        checkout_error = FetchError if self._filter else GitError
        sparse = ["--no-checkout"] if self._sparse_checkout_file else []
        self._git("worktree", "add", "--force", "--detach", *sparse, str(path), commit,
                  env=checkout_env, error=checkout_error, deadline=deadline)
        _relativise_gitdir(path)
        if self._sparse_checkout_file:
            # As upstream: the patterns go into the worktree's own sparse-checkout file,
            # `git sparse-checkout init` turns them on, and the checkout follows them.
            info = self._gitdir / "worktrees" / commit / "info"
            try:
                info.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self._sparse_checkout_file, info / "sparse-checkout")
            except OSError as e:
                raise SyncError(f"can't use --sparse-checkout-file {self._sparse_checkout_file}: "
                                f"{e.strerror}") from None
            self._git("-C", str(path), "sparse-checkout", "init", "--no-cone", deadline=deadline)
            self._git("-C", str(path), "reset", "--hard", "--quiet", commit,
                      env=checkout_env, error=checkout_error, deadline=deadline)
        if self._submodules != "off" and (path / ".gitmodules").exists():
            update = ["-C", str(path), "submodule", "update", "--init"]
            if self._submodules == "recursive":
                update.append("--recursive")
            if self._depth:
                update += ["--depth", str(self._depth)]
            self._git(*update, env=remote_env, error=FetchError, deadline=deadline)

    def _publish(self, commit: str) -> None:
        """Point the link at the commit's worktree by renaming a new symlink over it."""
        target = os.path.relpath(self.worktree(commit), self.link.parent)
        tmp = self.link.with_name(f".{self.link.name}.tmp")
        try:
            self.link.parent.mkdir(parents=True, exist_ok=True)
            tmp.unlink(missing_ok=True)
            os.symlink(target, tmp)
            os.replace(tmp, self.link)
        except OSError as e:
            raise SyncError(f"can't publish {self.link}: {e.strerror}") from None
        previous = self.current
        if previous and previous != commit:
            # Start the old worktree's stale clock; its mtime keeps it across a restart.
            self._stale_since[previous] = time.time()
            try:
                os.utime(self.worktree(previous))
            except OSError:
                pass
        self._stale_since.pop(commit, None)

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
