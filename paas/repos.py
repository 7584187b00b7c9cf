"""Hosted git repositories: one bare repo per push-to-deploy app, under the data directory.

A pod syncs ``DEPLOY_REF``, not the branch: a push moves it to the branch's new head, a
rollback moves it to an earlier revision. The user's branch is never rewritten, so the
next push after a rollback is an ordinary fast-forward that goes live again.

Branches and tags follow one rule: what was pushed stays. git refuses a non-fast-forward
branch update and a branch deletion itself (``receive.denyNonFastForwards``,
``receive.denyDeletes``), but neither applies to tags; the ``update`` hook refuses deleting
or moving a tag, unless the app's manifest says ``source: {tags: mutable}`` (the control
plane tells the hook by ``PAAS_TAGS`` on each push, so a changed manifest counts at once).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from paas import diskspace
from paas.errors import PaasError

# Hooks run inside `git receive-pack`; their output reaches the pusher as "remote: …" lines.
# What they tell the control plane goes to files in the directory PAAS_PUSH_NOTES names
# (PushNotes reads them). Only the app's deploy branch (and tags) may be pushed, so a push
# can't silently miss; its push options (`git push -o nowait`) go to `options`.
PRE_RECEIVE = """#!/bin/sh
if [ -n "$PAAS_PUSH_NOTES" ]; then
  i=0
  : > "$PAAS_PUSH_NOTES/options"
  while [ "$i" -lt "${GIT_PUSH_OPTION_COUNT:-0}" ]; do
    printenv "GIT_PUSH_OPTION_$i" >> "$PAAS_PUSH_NOTES/options"
    i=$((i + 1))
  done
fi
branch=$(git config --get paas.branch)
status=0
while read old new ref; do
  case "$ref" in
    "refs/heads/$branch"|refs/tags/*) ;;
    *) echo "paas: this app deploys branch '$branch'; push to it (git push <remote> HEAD:$branch), not ${ref#refs/heads/}" >&2
       status=1 ;;
  esac
done
exit $status
"""

# Per ref, after PRE_RECEIVE: a tag that exists may be neither deleted nor moved. Refusing
# one ref leaves the push's others to git (a branch pushed with it still deploys); the ref
# and the words git's report should give for it go to `refused`.
UPDATE = """#!/bin/sh
ref=$1 old=$2 new=$3
case "$ref" in refs/tags/*) ;; *) exit 0 ;; esac
[ "$PAAS_TAGS" = mutable ] && exit 0
case "$old" in *[!0]*) ;; *) exit 0 ;; esac
tag=${ref#refs/tags/}
case "$new" in
  *[!0]*) what="moved (it names $(git rev-parse --short "$old^{}"))" reason="already exists" ;;
  *) what="deleted" reason="deletion prohibited" ;;
esac
echo "paas: tag '$tag' can't be $what: this app's tags are immutable" >&2
echo "paas: to allow deleting and moving them, set 'source: {tags: mutable}' in its manifest (paas apply)" >&2
[ -n "$PAAS_PUSH_NOTES" ] && echo "$ref $reason" >> "$PAAS_PUSH_NOTES/refused"
exit 1
"""
HOOKS = {"pre-receive": PRE_RECEIVE, "update": UPDATE}


class RepoError(PaasError):
    pass


class PushNotes:
    """What the hooks leave for the control plane about one push, in a directory of its own
    inside the repository (on the data directory: no other disk to fill)."""

    def __init__(self, repository: Path) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="paas-push-", dir=repository))

    @property
    def env(self) -> dict[str, str]:
        return {"PAAS_PUSH_NOTES": str(self.path)}

    def options(self) -> list[str]:
        """The push options (`git push -o nowait`)."""
        return self._read("options").split()

    def refused(self) -> dict[str, str]:
        """Each ref a hook refused, with the reason git's report should give for it."""
        lines = (line.partition(" ") for line in self._read("refused").splitlines())
        return {ref: reason for ref, _, reason in lines if ref}

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def _read(self, name: str) -> str:
        try:
            return (self.path / name).read_text()
        except FileNotFoundError:
            return ""


DEPLOY_REF = "refs/paas/deploy"


class Repos:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, app: str) -> Path:
        return self.root / f"{app}.git"

    def create(self, app: str, branch: str) -> Path:
        path = self.path(app)
        self._git("init", "--quiet", "--bare", "--initial-branch", branch, str(path))
        self.configure(app, branch)
        return path

    def configure(self, app: str, branch: str) -> None:
        """Set the repo's config and hook as this version wants them (also for older repos)."""
        path = self.path(app)
        for key, value in (
            ("http.receivepack", "true"),
            ("receive.denyNonFastForwards", "true"),
            ("receive.denyDeletes", "true"),
            ("receive.advertisePushOptions", "true"),
            ("paas.branch", branch),
        ):
            self._git("config", key, value, cwd=path)
        for name, text in HOOKS.items():
            hook = path / "hooks" / name
            hook.write_text(text)
            hook.chmod(0o700)  # run by the control plane alone

    def delete(self, app: str) -> None:
        shutil.rmtree(self.path(app), ignore_errors=True)

    def push_notes(self, app: str) -> PushNotes:
        return PushNotes(self.path(app))

    def head(self, app: str, branch: str) -> str | None:
        """The commit the deploy branch points at, or None before the first push."""
        return self._resolve(app, f"refs/heads/{branch}")

    def deployed(self, app: str) -> str | None:
        """The commit pods are told to serve."""
        return self._resolve(app, DEPLOY_REF)

    def deploy(self, app: str, revision: str | None) -> None:
        """Point the deploy ref at ``revision`` (which must be in the repo); None: nothing to serve."""
        if revision is None:
            self._git("update-ref", "-d", DEPLOY_REF, cwd=self.path(app))
        else:
            self._git("update-ref", DEPLOY_REF, revision, cwd=self.path(app))

    def reset_branch(self, app: str, branch: str, to: str | None, expected: str) -> bool:
        """Move ``branch`` back to ``to`` (None: delete it) if it still points at ``expected``."""
        ref = f"refs/heads/{branch}"
        args = ("update-ref", ref, to, expected) if to else ("update-ref", "-d", ref, expected)
        done = subprocess.run(["git", *args], cwd=self.path(app), capture_output=True)
        return done.returncode == 0

    def has_commit(self, app: str, revision: str) -> bool:
        return self._resolve(app, revision) == revision

    def _resolve(self, app: str, ref: str) -> str | None:
        out = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
            cwd=self.path(app),
            capture_output=True,
            text=True,
        )
        return out.stdout.strip() or None

    def subject(self, app: str, revision: str) -> str:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%s", revision], cwd=self.path(app), capture_output=True, text=True
        )
        return out.stdout.strip()

    def _git(self, *args: str, cwd: Path | None = None) -> None:
        """Run git; its failure is one sentence (a full disk says so, with the room left)."""
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
        if done.returncode == 0:
            return
        error = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        if "No space left on device" in done.stderr or "Disk quota exceeded" in done.stderr:
            raise diskspace.no_space(self.root)
        raise RepoError(f"git {args[0]} failed in the app's repository: {error}")
