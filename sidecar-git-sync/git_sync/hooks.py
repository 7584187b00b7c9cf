"""Hooks run after the link moves: --exechook-command and --webhook-url.

As upstream: each hook has its own thread; `send(hash)` hands it the newest
published hash and returns at once. A failed run is retried after the hook's
backoff, always with the newest hash then (so a hash published during the
backoff supersedes the one that failed), until one succeeds. A hash that
already succeeded is not run again. Hooks must therefore be idempotent; they
also fire at start-up for a hash that was already linked.
"""

import subprocess
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

from git_sync import logs
from git_sync.auth import redact
from git_sync.logs import LOG, V


class HookError(Exception):
    """One run of a hook failed; the runner retries after its backoff."""


class Exechook:
    """Runs a command (no arguments) in the worktree of the hash, with $GITSYNC_HASH set."""

    name = "exechook"

    def __init__(self, command: str, worktree: Callable[[str], Path], timeout: float,
                 environ: Mapping[str, str], name: str = "exechook") -> None:
        self.name = name
        self._command = command
        self._worktree = worktree
        self._timeout = timeout
        self._env = {k: v for k, v in environ.items()
                     if k not in ("GITSYNC_PASSWORD", "GIT_SYNC_PASSWORD")}
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._closed = False

    def run(self, hash: str) -> None:
        LOG.info("running %s %s for %s", self.name, self._command, hash)
        with self._lock:
            if self._closed:
                raise HookError("git-sync is shutting down")
            try:
                self._proc = proc = subprocess.Popen(
                    [self._command], cwd=self._worktree(hash),
                    env={**self._env, "GITSYNC_HASH": hash},
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    text=True, errors="replace",
                )
            except OSError as e:
                raise HookError(f"can't run {self._command}: {e.strerror}") from None
        try:
            out, err = proc.communicate(timeout=self._timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise HookError(f"{self._command} timed out after {self._timeout:g}s "
                            "(--exechook-timeout)") from None
        finally:
            with self._lock:
                self._proc = None
        for stream, text in (("stdout", out), ("stderr", err)):
            if text.strip():
                LOG.log(V(2), "exechook %s: %s", stream, text.strip())
        if proc.returncode != 0:
            last = next((line for line in reversed(err.splitlines()) if line.strip()), "")
            raise HookError(f"{self._command} exited with status {proc.returncode}"
                            + (f": {last.strip()}" if last else ""))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._proc is not None:
                self._proc.kill()


class Webhook:
    """Sends `METHOD url` with header `Gitsync-Hash`; success is one status, or any (0)."""

    name = "webhook"

    def __init__(self, url: str, method: str, success_status: int, timeout: float) -> None:
        self._url = url
        self._method = method
        self._success = success_status
        self._timeout = timeout

    def run(self, hash: str) -> None:
        # http.client (and ssl for https) only now: an idle git-sync without a
        # webhook never pays for them.
        import http.client

        parts = urlsplit(self._url)
        headers = {"Gitsync-Hash": hash, "Content-Length": "0"}
        if parts.username is not None:
            import base64

            userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(userinfo.encode()).decode()
        host = parts.hostname or ""
        connection_type = (http.client.HTTPSConnection if parts.scheme == "https"
                           else http.client.HTTPConnection)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        LOG.info("sending webhook %s %s for %s", self._method, redact(self._url), hash)
        connection = connection_type(host, parts.port, timeout=self._timeout)
        try:
            connection.request(self._method, path, headers=headers)
            status = connection.getresponse().status
        except (OSError, http.client.HTTPException) as e:
            raise HookError(redact(f"{self._method} {self._url} failed: {e}")) from None
        finally:
            connection.close()
        if self._success and status != self._success:
            raise HookError(f"received response code {status}, expected {self._success}")

    def close(self) -> None:
        pass


class HookRunner:
    """Runs one hook for the newest hash in a thread of its own, retrying until it succeeds."""

    def __init__(self, hook: Exechook | Webhook, backoff: float,
                 on_done: Callable[[str, str], None] = lambda name, status: None) -> None:
        self.hook = hook
        self._backoff = backoff
        self._on_done = on_done
        self._cond = threading.Condition()
        self._wanted = ""
        self._succeeded = ""
        self._first: bool | None = None  # outcome of the first run, for --one-time
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=hook.name, daemon=True)

    def start(self) -> "HookRunner":
        self._thread.start()
        return self

    def send(self, hash: str) -> None:
        """Run the hook for `hash` (superseding any older hash not yet run successfully)."""
        with self._cond:
            self._wanted = hash
            self._cond.notify_all()

    def wait_first(self, timeout: float | None = None) -> bool:
        """Whether the first run succeeded, once it has finished (False on stop or timeout)."""
        with self._cond:
            self._cond.wait_for(lambda: self._first is not None or self._stopping, timeout)
            return bool(self._first)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self.hook.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or self._wanted != self._succeeded)
                if self._stopping:
                    return
                hash = self._wanted
            try:
                self.hook.run(hash)
            except HookError as e:
                if self._stopping:
                    return
                logs.error(f"{self.hook.name} failed for {hash}, retrying in {self._backoff:g}s",
                           e, hash=hash)
                self._finished("error")
                with self._cond:
                    self._cond.wait_for(lambda: self._stopping, self._backoff)
                continue
            except Exception:  # a bug: say where, keep the thread (and its retries) alive
                LOG.exception("%s crashed", self.hook.name)
                self._finished("error")
                with self._cond:
                    self._cond.wait_for(lambda: self._stopping, self._backoff)
                continue
            LOG.log(V(1), "%s succeeded for %s", self.hook.name, hash)
            with self._cond:
                self._succeeded = hash
            self._finished("success")

    def _finished(self, status: str) -> None:
        self._on_done(self.hook.name, status)
        with self._cond:
            if self._first is None:
                self._first = status == "success"
                self._cond.notify_all()

