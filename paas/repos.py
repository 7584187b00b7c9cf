"""Hosted git repositories: one bare repo per push-to-deploy app, under the data directory.

A pod syncs ``DEPLOY_REF``, not the branch: a push moves it to the branch's new head, a
rollback moves it to an earlier revision. The user's branch is never rewritten, so the
next push after a rollback is an ordinary fast-forward that goes live again.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

# Runs inside `git receive-pack`; its output reaches the pusher as "remote: …" lines.
# Only the app's deploy branch (and tags) may be pushed, so a push can't silently miss.
# The push options (`git push -o nowait`) go to the file the control plane names.
PRE_RECEIVE = """#!/bin/sh
if [ -n "$PAAS_PUSH_OPTIONS" ]; then
  i=0
  : > "$PAAS_PUSH_OPTIONS"
  while [ "$i" -lt "${GIT_PUSH_OPTION_COUNT:-0}" ]; do
    printenv "GIT_PUSH_OPTION_$i" >> "$PAAS_PUSH_OPTIONS"
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


DEPLOY_REF = "refs/paas/deploy"


class Repos:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, app: str) -> Path:
        return self.root / f"{app}.git"

    def create(self, app: str, branch: str) -> Path:
        path = self.path(app)
        _git("init", "--quiet", "--bare", "--initial-branch", branch, str(path))
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
            _git("config", key, value, cwd=path)
        hook = path / "hooks" / "pre-receive"
        hook.write_text(PRE_RECEIVE)
        hook.chmod(0o700)  # run by the control plane alone

    def delete(self, app: str) -> None:
        shutil.rmtree(self.path(app), ignore_errors=True)

    def head(self, app: str, branch: str) -> str | None:
        """The commit the deploy branch points at, or None before the first push."""
        return self._resolve(app, f"refs/heads/{branch}")

    def deployed(self, app: str) -> str | None:
        """The commit pods are told to serve."""
        return self._resolve(app, DEPLOY_REF)

    def deploy(self, app: str, revision: str | None) -> None:
        """Point the deploy ref at ``revision`` (which must be in the repo); None: nothing to serve."""
        if revision is None:
            _git("update-ref", "-d", DEPLOY_REF, cwd=self.path(app))
        else:
            _git("update-ref", DEPLOY_REF, revision, cwd=self.path(app))

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


def _git(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)
