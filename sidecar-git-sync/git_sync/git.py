"""Running git: argument lists, the sync's deadline, failures as one line."""

import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from git_sync.auth import redact
from git_sync.errors import GitError
from git_sync.logs import LOG, V


class Git:
    """Runs `git` in one directory; `kill_all` stops whatever still runs at shutdown."""

    def __init__(self, command: str, cwd: Path, env: Mapping[str, str]) -> None:
        self._command = command
        self._cwd = cwd
        self._env = dict(env)
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[str]] = set()
        self._closed = False

    @property
    def env(self) -> dict[str, str]:
        """The environment every git command gets (before per-command additions)."""
        return dict(self._env)

    def __call__(
        self,
        *args: str,
        deadline: float,
        env: Mapping[str, str] | None = None,
        error: type[GitError] = GitError,
        check: bool = True,
    ) -> str:
        """git's stdout; raises `error` with git's last stderr line if it fails (unless not
        `check`) or overruns."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise error(f"git {args[0]} not started: --sync-timeout expired")
        LOG.log(V(1), "running: git %s", " ".join(args))
        with self._lock:
            if self._closed:
                raise GitError("git-sync is shutting down")
            try:
                proc = subprocess.Popen(
                    [self._command, *args],
                    cwd=self._cwd,
                    env={**self._env, **(env or {})},
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    errors="replace",
                )
            except OSError as e:
                raise GitError(f"can't run {self._command}: {e.strerror}") from None
            self._running.add(proc)
        try:
            out, err = proc.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise error(f"git {args[0]} timed out (--sync-timeout)") from None
        finally:
            with self._lock:
                self._running.discard(proc)
        if proc.returncode != 0 and check:
            LOG.log(V(2), "git %s stderr: %s", args[0], err.strip())
            reason = _last_line(err) or f"exit status {proc.returncode}"
            raise error(redact(f"git {args[0]} failed: {reason}"))
        return out

    def kill_all(self) -> None:
        """Kill running git commands and refuse new ones."""
        with self._lock:
            self._closed = True
            for proc in self._running:
                proc.kill()


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
