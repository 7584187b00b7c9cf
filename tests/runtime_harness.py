"""A paas-runtime supervisor driven without git-sync: the test suite's and benches' harness.

``Workspace`` lays out what git-sync maintains (``.worktrees/<hash>`` and a ``current`` link
swapped by rename); ``Runtime`` runs one real ``paas-runtime`` process against it.
"""

from __future__ import annotations

import hashlib
import http.client
import itertools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

from helpers import free_port, wait_for

_counter = itertools.count()


def get(port: int, path: str = "/", timeout: float = 5.0) -> tuple[int, str]:
    """One request on a new connection (no keep-alive), as a fresh client would."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def try_get(port: int, path: str = "/") -> tuple[int, str] | None:
    try:
        return get(port, path, timeout=2.0)
    except OSError:
        return None


class Workspace:
    """What git-sync maintains: ``.worktrees/<hash>`` dirs and the ``current`` link.

    Like git-sync, publishing a revision removes the worktree published before it at
    once, while its instance may still be serving (and draining) from it.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.link = root / "current"
        self.published: str | None = None
        (root / ".worktrees").mkdir(parents=True)

    def write(self, files: dict[str, str]) -> str:
        """Write a worktree holding exactly ``files``; its name is a fake commit hash."""
        rev = hashlib.sha1(f"{next(_counter)}:{files}".encode()).hexdigest()
        worktree = self.root / ".worktrees" / rev
        worktree.mkdir()
        for name, body in files.items():
            (worktree / name).parent.mkdir(parents=True, exist_ok=True)
            (worktree / name).write_text(body)
        return rev

    def publish(self, rev: str) -> None:
        """Point the link at ``rev`` the way git-sync does: rename a new link over the old."""
        tmp = self.root / f".current-{rev}"
        os.symlink(f".worktrees/{rev}", tmp)
        os.rename(tmp, self.link)
        previous, self.published = self.published, rev
        if previous is not None and previous != rev:
            shutil.rmtree(self.root / ".worktrees" / previous)


class Runtime:
    """One ``paas-runtime`` process; its output goes to a log file the test can show. Given a
    pod credential, as a pod's runtime is: ``headers`` carry it to its status endpoint."""

    def __init__(self, workspace: Workspace, cache_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.status_url = f"http://127.0.0.1:{free_port()}/status"
        self.log_path = workspace.root / "runtime.log"
        secret = workspace.root.parent / "credential" / "token"
        if not secret.exists():
            secret.parent.mkdir(mode=0o700, exist_ok=True)
            secret.write_text(secrets.token_hex(32))
        self.headers = {"Authorization": f"Bearer {secret.read_text()}"}
        full_env = {
            **os.environ,
            "PORT": str(self.port),
            "PAAS_STATUS_BIND": self.status_url.removeprefix("http://").removesuffix("/status"),
            "PAAS_STATUS_TOKEN_FILE": str(secret),
            "PAAS_APP_DIR": str(workspace.link),
            "PAAS_CACHE_DIR": str(cache_dir),
            "PAAS_HEALTH_TIMEOUT": "15",
            **env,
        }
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "paas_runtime"],
                cwd=workspace.root,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def state(self) -> dict[str, Any]:
        """What the supervisor's status endpoint answers ({} until it listens)."""
        try:
            return requests.get(self.status_url, headers=self.headers, timeout=2).json()
        except (requests.RequestException, ValueError):
            return {}

    def wait_for_text(self, text: str, timeout: float = 60.0) -> None:
        def served() -> bool:
            answer = try_get(self.port)
            return answer is not None and answer == (200, text)

        wait_for(served, timeout, what=f"{text!r} on port {self.port}")

    def wait_for_state(self, timeout: float = 30.0, **expected: Any) -> dict[str, Any]:
        def matches() -> dict[str, Any] | None:
            state = self.state()
            return state if all(state.get(k) == v for k, v in expected.items()) else None

        return wait_for(matches, timeout, what=f"state {expected}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class Load:
    """Steady traffic from loopback clients, each ``rate`` requests/s, until stopped (or 90 s).

    Half the clients open a new connection per request, half keep theirs alive as
    browsers do. Every request is recorded with when it began and ended.
    """

    def __init__(self, port: int, clients: int = 2, rate: float = 25.0, limit: float = 90.0) -> None:
        self.port, self.rate, self.limit = port, rate, limit
        self.records: list[tuple[float, float, str]] = []  # (began, ended, body)
        self.failures: list[str] = []
        self._done = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(i % 2 == 1,), daemon=True) for i in range(clients)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        for thread in self._threads:
            thread.join(10)

    def bodies(self) -> list[str]:
        return [body for _, _, body in self.records]

    def _client(self, keep_alive: bool) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        headers = {} if keep_alive else {"Connection": "close"}
        deadline = time.monotonic() + self.limit
        try:
            while not self._done.is_set() and time.monotonic() < deadline:
                began = time.monotonic()
                try:
                    conn.request("GET", "/", headers=headers)
                    response = conn.getresponse()
                    body = response.read().decode()
                except (OSError, http.client.HTTPException) as e:
                    self.failures.append(f"{'keep-alive' if keep_alive else 'new connection'}: {e!r}")
                    conn.close()
                else:
                    self.records.append((began, time.monotonic(), body))
                    if response.status != 200:
                        self.failures.append(f"{response.status} {body!r}")
                    if not keep_alive:
                        conn.close()
                time.sleep(max(0.0, 1 / self.rate - (time.monotonic() - began)))
        finally:
            conn.close()


def out_of_order(records: list[tuple[float, float, str]], rank: dict[str, int]) -> int:
    """Requests that got an older revision although a request that ended before they began got a newer one."""
    by_end = sorted(records, key=lambda r: r[1])
    newest, i, bad = -1, 0, 0
    for began, _, body in sorted(records, key=lambda r: r[0]):
        while i < len(by_end) and by_end[i][1] < began:
            newest = max(newest, rank.get(by_end[i][2], -1))
            i += 1
        bad += rank.get(body, -1) < newest
    return bad
