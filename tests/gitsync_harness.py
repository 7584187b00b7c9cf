"""git-sync run as a real process against real git servers on loopback: the sidecar handle,
the servers and the fixtures every test_git_sync* module uses (registered in conftest.py).

Test repositories are served by `git http-backend` behind basic auth and by `git daemon`
(tests/gitserver.py); tests taking the `remote` fixture run against both. Every sidecar
started here is killed by the fixture that started it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from gitserver import GIT_ENV, GitDaemon, GitServer, Served, Upstream
from helpers import free_port, wait_for

USERNAME = "deployer"
PASSWORD = "pw-7c1e-Sekr3t"  # distinctive, so it can be looked for in output and argv


class Remote(Upstream):
    """An upstream repository and the flags git-sync needs to reach it."""

    def __init__(self, server: Served, name: str, workdir: Path, auth: bool) -> None:
        super().__init__(server, name, workdir)
        self.args = (f"--repo={self.url}", *([f"--username={USERNAME}"] if auth else []))


class Sidecar:
    def __init__(self, proc: subprocess.Popen[bytes], root: Path, link: Path,
                 log: Path, port: int | None) -> None:
        self.proc = proc
        self.root = root
        self.link = link
        self.log = log
        self.port = port

    @property
    def output(self) -> str:
        return self.log.read_text()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, **kwargs: Any) -> requests.Response | None:
        try:
            return requests.get(self.url(path), timeout=5, **kwargs)
        except requests.ConnectionError:
            return None  # not listening yet

    def post_sync(self) -> requests.Response:
        return requests.post(self.url("/sync"), timeout=10)

    def linked_hash(self) -> str | None:
        try:
            return Path(os.readlink(self.link)).name
        except OSError:
            return None

    def worktrees(self) -> list[str]:
        return sorted(p.name for p in (self.root / ".worktrees").iterdir())

    def wait_ready(self) -> None:
        wait_for(lambda: (r := self.get("/")) is not None and r.status_code == 200,
                 what=f"GET / to answer 200; output:\n{self.output}", timeout=10)

    def wait_linked(self, commit: str) -> None:
        wait_for(lambda: self.linked_hash() == commit,
                 what=f"link to point at {commit}; output:\n{self.output}", timeout=10)

    def wait_exit(self, timeout: float = 10.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"git-sync still running; output:\n{self.output}") from None

    def metric(self, sample: str, absent: float | None = None) -> float:
        """The sample's value; ``absent`` if it isn't there (as upstream, a labelled series
        only appears once it is first counted), or a failed assertion."""
        response = self.get("/metrics")
        assert response is not None
        match = re.search(rf"^{re.escape(sample)} (\S+)$", response.text, re.M)
        if match is None and absent is not None:
            return absent
        assert match, f"{sample} not in /metrics:\n{response.text}"
        return float(match.group(1))


StartSidecar = Callable[..., Sidecar]


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    with GitServer(tmp_path_factory.mktemp("served"), USERNAME, PASSWORD) as server:
        yield server


@pytest.fixture(scope="module")
def git_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitDaemon]:
    with GitDaemon(tmp_path_factory.mktemp("daemon")) as daemon:
        yield daemon


def _repo_name(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60]


@pytest.fixture
def upstream(git_server: GitServer, tmp_path: Path, request: pytest.FixtureRequest) -> Remote:
    """A repository behind `git http-backend` with basic auth."""
    return Remote(git_server, _repo_name(request), tmp_path / "work", auth=True)


@pytest.fixture(params=["http", "daemon"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    """A repository behind `git http-backend` (basic auth), then behind `git daemon`."""
    if request.param == "http":
        return Remote(request.getfixturevalue("git_server"), _repo_name(request),
                      tmp_path / "work", auth=True)
    return Remote(request.getfixturevalue("git_daemon"), _repo_name(request),
                  tmp_path / "work", auth=False)


@pytest.fixture
def start_sidecar(tmp_path: Path) -> Iterator[StartSidecar]:
    """Start `python -m git_sync`; HTTP on a free port, and the password in the environment
    whenever a username is given."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, env: dict[str, str] | None = None, http: bool = True,
              root: Path | None = None, password: str | None = PASSWORD,
              cwd: Path | None = None) -> Sidecar:
        root = root or tmp_path / "root"
        port = free_port() if http else None
        argv = [sys.executable, "-m", "git_sync", f"--root={root}", *args]
        if http:  # as upstream, /metrics needs --http-metrics too
            argv += [f"--http-bind=127.0.0.1:{port}", "--http-metrics"]
        child_env = {k: v for k, v in os.environ.items()
                     if not k.startswith(("GITSYNC_", "GIT_SYNC_"))}
        child_env.update(GIT_ENV)
        child_env.update(env or {})
        username = any(a.startswith("--username") for a in args) or "GITSYNC_USERNAME" in child_env
        if password is not None and username:
            child_env["GITSYNC_PASSWORD"] = password
        log = tmp_path / f"git-sync-{len(started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, env=child_env, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=cwd)
        started.append(proc)
        link_name = next((a.split("=", 1)[1] for a in args if a.startswith("--link=")), None)
        return Sidecar(proc, root, root / (link_name or _leaf(args, child_env)), log, port)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _leaf(args: tuple[str, ...], env: dict[str, str]) -> str:
    repo = next((a.split("=", 1)[1] for a in args if a.startswith("--repo=")),
                env.get("GITSYNC_REPO", ""))
    return repo.rstrip("/").rsplit("/", 1)[-1]
