"""The git-sync sidecar, run as a real process against real git over real HTTP.

Test repositories are served by `git http-backend` behind basic auth on
loopback (tests/gitserver.py); every sidecar started here is killed by the
fixture that started it.
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from git_sync import options
from gitserver import GitServer
from helpers import free_port, wait_for

pytestmark = pytest.mark.slow

USERNAME = "deployer"
PASSWORD = "pw-7c1e-Sekr3t"  # distinctive, so it can be looked for in output and argv
README = Path(__file__).resolve().parents[1] / "sidecar-git-sync" / "README.md"

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV},
                            capture_output=True, text=True, check=True)
    return result.stdout.strip()


class Upstream:
    """A bare repository behind the git server, and a clone to commit and push from."""

    def __init__(self, server: GitServer, name: str, workdir: Path) -> None:
        self.name = name
        self.bare = server.root / f"{name}.git"
        self.url = server.url(f"{name}.git")
        self.work = workdir
        git("init", "--quiet", "--bare", "--initial-branch=main", str(self.bare))
        git("init", "--quiet", "--initial-branch=main", str(self.work))
        git("remote", "add", "origin", str(self.bare), cwd=self.work)

    def commit(self, content: str, path: str = "index.html") -> str:
        (self.work / path).write_text(content)
        git("add", path, cwd=self.work)
        git("commit", "--quiet", "-m", content, cwd=self.work)
        git("push", "--quiet", "--force", "origin", "HEAD:main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def reset_hard(self, commit: str) -> None:
        git("reset", "--quiet", "--hard", commit, cwd=self.work)


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

    def get(self, path: str) -> requests.Response | None:
        try:
            return requests.get(self.url(path), timeout=5)
        except requests.ConnectionError:
            return None  # not listening yet

    def post_sync(self) -> requests.Response:
        return requests.post(self.url("/sync"), timeout=10)

    def linked_hash(self) -> str | None:
        try:
            return Path(os.readlink(self.link)).name
        except OSError:
            return None

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

    def metric(self, sample: str) -> float:
        response = self.get("/metrics")
        assert response is not None
        match = re.search(rf"^{re.escape(sample)} (\S+)$", response.text, re.M)
        assert match, f"{sample} not in /metrics"
        return float(match.group(1))


StartSidecar = Callable[..., Sidecar]


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    with GitServer(tmp_path_factory.mktemp("served"), USERNAME, PASSWORD) as server:
        yield server


@pytest.fixture
def upstream(git_server: GitServer, tmp_path: Path, request: pytest.FixtureRequest) -> Upstream:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    return Upstream(git_server, name, tmp_path / "work")


@pytest.fixture
def start_sidecar(tmp_path: Path) -> Iterator[StartSidecar]:
    """Start `python -m git_sync`; HTTP on a free port and the password in the env by default."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, env: dict[str, str] | None = None, http: bool = True,
              root: Path | None = None, password: str | None = PASSWORD) -> Sidecar:
        root = root or tmp_path / "root"
        port = free_port() if http else None
        argv = [sys.executable, "-m", "git_sync", f"--root={root}", *args]
        if http:
            argv.append(f"--http-bind=127.0.0.1:{port}")
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("GITSYNC_")}
        child_env.update(GIT_ENV)
        if password is not None:
            child_env["GITSYNC_PASSWORD"] = password
        child_env.update(env or {})
        log = tmp_path / f"git-sync-{len(started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, env=child_env, stdout=out, stderr=subprocess.STDOUT)
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
    return repo.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")


def repo_args(upstream: Upstream) -> tuple[str, str]:
    return f"--repo={upstream.url}", f"--username={USERNAME}"


# --- the layout and the first sync -------------------------------------------------


def test_one_time_sync_publishes_a_relative_link_to_the_commit_worktree(
    upstream: Upstream, start_sidecar: StartSidecar
) -> None:
    commit = upstream.commit("hello v1")
    sidecar = start_sidecar(*repo_args(upstream), "--one-time", http=False)

    assert sidecar.wait_exit() == 0, sidecar.output
    assert os.readlink(sidecar.link) == f".worktrees/{commit}"
    assert (sidecar.link / "index.html").read_text() == "hello v1"
    assert (sidecar.root / ".git").is_dir()
    assert sorted(p.name for p in (sidecar.root / ".worktrees").iterdir()) == [commit]
    assert (sidecar.link / ".git").read_text().startswith("gitdir: ../../.git/worktrees/")
    assert f"synced HEAD -> {commit}" in sidecar.output


def test_restart_reuses_root_and_replaces_a_leftover_worktree(
    upstream: Upstream, start_sidecar: StartSidecar
) -> None:
    first = upstream.commit("v1")
    initial = start_sidecar(*repo_args(upstream), "--one-time", http=False)
    assert initial.wait_exit() == 0, initial.output
    root = initial.root
    git("config", "test.marker", "kept", cwd=root)  # survives only if .git is reused
    second = upstream.commit("v2")
    leftover = root / ".worktrees" / second  # as if a previous run died mid-checkout
    leftover.mkdir()
    (leftover / "junk").write_text("half-written")

    sidecar = start_sidecar(*repo_args(upstream), "--one-time", http=False)

    assert sidecar.wait_exit() == 0, sidecar.output
    assert sidecar.linked_hash() == second
    assert (sidecar.link / "index.html").read_text() == "v2"
    assert not (sidecar.link / "junk").exists()
    assert not (root / ".worktrees" / first).exists()
    assert git("config", "test.marker", cwd=root) == "kept"

    worktree = root / ".worktrees" / second
    inode = worktree.stat().st_ino
    again = start_sidecar(*repo_args(upstream), "--one-time", http=False)
    assert again.wait_exit() == 0, again.output
    assert worktree.stat().st_ino == inode, "an unchanged commit must not be checked out again"


# --- following the remote -----------------------------------------------------------


def test_poll_picks_up_a_new_commit_and_removes_the_old_worktree(
    upstream: Upstream, start_sidecar: StartSidecar
) -> None:
    first = upstream.commit("v1")
    sidecar = start_sidecar(*repo_args(upstream), "--period=200ms")
    sidecar.wait_linked(first)

    second = upstream.commit("v2")

    sidecar.wait_linked(second)
    assert (sidecar.link / "index.html").read_text() == "v2"
    worktrees = sidecar.root / ".worktrees"
    wait_for(lambda: [p.name for p in worktrees.iterdir()] == [second], what="old worktree removal", timeout=10)


def test_post_sync_moves_the_link_before_answering(
    upstream: Upstream, start_sidecar: StartSidecar
) -> None:
    upstream.commit("v1")
    sidecar = start_sidecar(*repo_args(upstream), "--period=1h")
    sidecar.wait_ready()
    second = upstream.commit("v2")

    response = sidecar.post_sync()

    assert response.status_code == 200, response.text
    assert response.json() == {"hash": second, "changed": True}
    assert sidecar.linked_hash() == second
    assert (sidecar.link / "index.html").read_text() == "v2"
    assert sidecar.post_sync().json() == {"hash": second, "changed": False}


def test_concurrent_post_sync_requests_share_syncs(
    upstream: Upstream, start_sidecar: StartSidecar
) -> None:
    upstream.commit("v1")
    sidecar = start_sidecar(*repo_args(upstream), "--period=1h")
    sidecar.wait_ready()
    fetches_before = sidecar.metric("git_fetch_count_total")
    second = upstream.commit("v2")
    answers: list[dict[str, Any]] = []

    def post() -> None:
        answers.append(sidecar.post_sync().json())

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert [a["hash"] for a in answers] == [second] * 6
    # Requests that arrive together start one sync; those that arrive while it
    # runs wait for (and share) exactly one more.
    assert sidecar.metric("git_fetch_count_total") - fetches_before <= 2


def test_post_sync_is_fast_for_a_small_repo(
    upstream: Upstream, start_sidecar: StartSidecar
) -> None:
    upstream.commit("v0")
    sidecar = start_sidecar(*repo_args(upstream), "--period=1h")
    sidecar.wait_ready()
    latencies = []
    for i in range(1, 6):
        commit = upstream.commit(f"v{i}")
        start = time.perf_counter()
        assert sidecar.post_sync().json() == {"hash": commit, "changed": True}
        latencies.append(time.perf_counter() - start)

    assert statistics.median(latencies) < 0.2, latencies


def test_force_push_publishes_the_rewritten_commit(
    upstream: Upstream, start_sidecar: StartSidecar
) -> None:
    base = upstream.commit("v1")
    upstream.commit("v2")
    sidecar = start_sidecar(*repo_args(upstream), "--period=1h")
    sidecar.wait_ready()

    upstream.reset_hard(base)
    rewritten = upstream.commit("v2, rewritten")  # pushed with --force

    assert sidecar.post_sync().json() == {"hash": rewritten, "changed": True}
    assert (sidecar.link / "index.html").read_text() == "v2, rewritten"


@pytest.mark.parametrize("kind", ["branch", "annotated tag", "commit hash"])
def test_ref_may_be_a_branch_a_tag_or_a_commit_hash(
    kind: str, upstream: Upstream, start_sidecar: StartSidecar
) -> None:
    wanted = upstream.commit("wanted")
    git("tag", "--annotate", "-m", "release", "v1.0", cwd=upstream.work)
    git("push", "--quiet", "origin", "v1.0", "main:stable", cwd=upstream.work)
    upstream.commit("later")  # main moves on; the ref must not follow it
    ref = {"branch": "stable", "annotated tag": "v1.0", "commit hash": wanted}[kind]

    sidecar = start_sidecar(*repo_args(upstream), f"--ref={ref}", "--one-time", http=False)

    assert sidecar.wait_exit() == 0, sidecar.output
    assert sidecar.linked_hash() == wanted
    assert (sidecar.link / "index.html").read_text() == "wanted"


# --- failures -------------------------------------------------------------------------


def test_a_bad_ref_exits_non_zero_with_gits_own_message(
    upstream: Upstream, start_sidecar: StartSidecar
) -> None:
    upstream.commit("v1")
    sidecar = start_sidecar(*repo_args(upstream), "--ref=no-such-branch", "--one-time", http=False)

    assert sidecar.wait_exit() != 0
    assert "couldn't find remote ref no-such-branch" in sidecar.output
    assert "Traceback" not in sidecar.output
    assert not os.path.lexists(sidecar.link)


def test_by_default_the_first_failure_is_fatal(start_sidecar: StartSidecar) -> None:
    sidecar = start_sidecar(f"--repo=http://127.0.0.1:{free_port()}/gone.git", password=None)

    assert sidecar.wait_exit() == 1
    errors = [line for line in sidecar.output.splitlines() if "error:" in line]
    assert len(errors) == 1, sidecar.output
    assert "git fetch failed: fatal: unable to access" in errors[0]


def test_max_failures_counts_consecutive_failures(
    tmp_path: Path, start_sidecar: StartSidecar
) -> None:
    (tmp_path / "served").mkdir()
    with GitServer(tmp_path / "served", USERNAME, PASSWORD) as server:
        upstream = Upstream(server, "flaky", tmp_path / "flaky-work")
        upstream.commit("v1")
        sidecar = start_sidecar(*repo_args(upstream), "--max-failures=3", "--period=100ms")
        sidecar.wait_ready()
    # The server is down now: three failures in a row, then exit.

    assert sidecar.wait_exit() == 1
    assert "(1 consecutive)" in sidecar.output
    assert "(2 consecutive)" in sidecar.output
    assert "giving up after 3 consecutive failure(s) (--max-failures=3)" in sidecar.output


def test_negative_max_failures_retries_until_the_repo_appears_and_http_reports_it(
    git_server: GitServer, tmp_path: Path, start_sidecar: StartSidecar
) -> None:
    url = git_server.url("not-yet.git")
    sidecar = start_sidecar(f"--repo={url}", f"--username={USERNAME}",
                            "--max-failures=-1", "--period=100ms")
    wait_for(lambda: sidecar.get("/") is not None, what="the HTTP endpoint", timeout=10)
    assert sidecar.get("/").status_code == 503
    wait_for(lambda: sidecar.metric('git_sync_count_total{status="error"}') >= 2,
               what="two failed syncs", timeout=10)

    commit = Upstream(git_server, "not-yet", tmp_path / "late-work").commit("late")

    sidecar.wait_ready()
    assert sidecar.linked_hash() == commit
    metrics = sidecar.get("/metrics").text
    for name in ("git_sync_duration_seconds", "git_sync_count_total", "git_fetch_count_total"):
        assert f"# TYPE {name.removesuffix('_total')}" in metrics
    assert sidecar.metric('git_sync_count_total{status="success"}') == 1
    assert sidecar.proc.poll() is None


# --- credentials ----------------------------------------------------------------------


@pytest.mark.parametrize("source", ["GITSYNC_PASSWORD", "--password-file"])
def test_password_reaches_git_but_no_argv_and_no_log(
    source: str, upstream: Upstream, start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    commit = upstream.commit("secret stuff")
    argv_log = tmp_path / "git-argv.log"
    wrapper = tmp_path / "git-wrapper"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {argv_log}\nexec git "$@"\n')
    wrapper.chmod(0o755)
    args = [*repo_args(upstream), "--one-time", f"--git={wrapper}", "-v", "2"]
    if source == "--password-file":
        password_file = tmp_path / "password"
        password_file.write_text(PASSWORD + "\n")
        args.append(f"--password-file={password_file}")

    sidecar = start_sidecar(*args, http=False,
                            password=PASSWORD if source == "GITSYNC_PASSWORD" else None)

    assert sidecar.wait_exit() == 0, sidecar.output
    assert sidecar.linked_hash() == commit
    assert "fetch" in argv_log.read_text()
    assert PASSWORD not in argv_log.read_text()
    assert PASSWORD not in sidecar.output


def test_a_wrong_password_fails_without_showing_it(
    upstream: Upstream, start_sidecar: StartSidecar
) -> None:
    upstream.commit("v1")
    sidecar = start_sidecar(*repo_args(upstream), "--one-time", "-v", "2", http=False,
                            password="wrong-Pa55word")

    assert sidecar.wait_exit() != 0
    assert "Authentication failed" in sidecar.output
    assert "wrong-Pa55word" not in sidecar.output


def test_the_password_file_is_read_again_before_every_sync(
    upstream: Upstream, start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    commit = upstream.commit("v1")
    password_file = tmp_path / "password"
    password_file.write_text("not-yet-rotated")
    sidecar = start_sidecar(*repo_args(upstream), f"--password-file={password_file}",
                            "--max-failures=-1", "--period=100ms", password=None)
    wait_for(lambda: "Authentication failed" in sidecar.output, what="a failed sync", timeout=10)

    password_file.write_text(PASSWORD)

    sidecar.wait_linked(commit)


def test_credentials_in_the_repo_url_are_used_but_never_logged(
    upstream: Upstream, start_sidecar: StartSidecar
) -> None:
    commit = upstream.commit("v1")
    url = upstream.url.replace("http://", f"http://{USERNAME}:{PASSWORD}@")
    sidecar = start_sidecar(f"--repo={url}", "--one-time", f"--link={upstream.name}",
                            http=False, password=None)

    assert sidecar.wait_exit() == 0, sidecar.output
    assert sidecar.linked_hash() == commit
    assert PASSWORD not in sidecar.output


# --- process behaviour ----------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_exit_cleanly_and_quickly(
    signum: int, upstream: Upstream, start_sidecar: StartSidecar
) -> None:
    upstream.commit("v1")
    sidecar = start_sidecar(*repo_args(upstream))
    sidecar.wait_ready()

    start = time.monotonic()
    sidecar.proc.send_signal(signum)

    assert sidecar.wait_exit(timeout=5) == 0
    assert time.monotonic() - start < 1.0
    assert "Traceback" not in sidecar.output


def test_an_unknown_flag_is_a_one_line_fatal_error(start_sidecar: StartSidecar) -> None:
    sidecar = start_sidecar("--repo=http://example.invalid/x.git", "--no-such-flag",
                            http=False, password=None)

    assert sidecar.wait_exit() == 1
    assert sidecar.output.splitlines() == [
        "git-sync: error: unrecognized arguments: --no-such-flag"
    ]


def test_options_come_from_the_environment_and_flags_win(
    upstream: Upstream, start_sidecar: StartSidecar
) -> None:
    commit = upstream.commit("v1")
    env = {"GITSYNC_REPO": upstream.url, "GITSYNC_USERNAME": USERNAME,
           "GITSYNC_ONE_TIME": "true", "GITSYNC_REF": "no-such-branch"}

    sidecar = start_sidecar("--ref=main", env=env, http=False)

    assert sidecar.wait_exit() == 0, sidecar.output
    assert sidecar.linked_hash() == commit


# --- options, in process ----------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("10s", 10), ("1m", 60), ("1m30s", 90), ("1.5h", 5400), ("0", 0),
    ("250us", 0.00025), ("-2s", -2),
])
def test_go_durations(text: str, seconds: float) -> None:
    assert options.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "1x", "s", "1m 30s", "1.2.3s"])
def test_malformed_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        options.parse_duration(text)


def test_defaults_match_upstream() -> None:
    opts = options.parse(["--repo=https://example.com/org/app.git", "--root=/r"], {})

    assert (opts.ref, opts.link, opts.period, opts.sync_timeout) == ("HEAD", "app", 10, 120)
    assert (opts.depth, opts.max_failures, opts.one_time) == (1, 0, False)
    assert (opts.http_bind, opts.http_metrics, opts.verbose) == ("", True, 0)


def test_flag_forms_and_environment() -> None:
    env = {"GITSYNC_REPO": "https://h/app", "GITSYNC_ROOT": "/r", "GITSYNC_PERIOD": "1m",
           "GITSYNC_HTTP_METRICS": "false", "GITSYNC_MAX_FAILURES": "5"}

    opts = options.parse(["--period=2s", "--one-time", "--max-failures", "-1", "-v"], env)

    assert (opts.repo, opts.period, opts.http_metrics) == ("https://h/app", 2, False)
    assert (opts.one_time, opts.max_failures, opts.verbose) == (True, -1, 1)
    assert options.parse(["--one-time=false", "-v", "3"], env).one_time is False


@pytest.mark.parametrize(("argv", "env", "message"), [
    ([], {}, "--repo must be specified"),
    (["--repo=x"], {}, "--root must be specified"),
    (["--repo=x", "--root=/r", "--period=5ms"], {}, "--period must be at least 10ms"),
    (["--repo=x", "--root=/r"], {"GITSYNC_DEPTH": "one"}, "$GITSYNC_DEPTH: invalid integer"),
    (["--repo=x", "--root=/r"], {"GITSYNC_PASSWORD": "p"}, "need --username"),
    (["--repo=x", "--root=/r", "--one-time=maybe"], {}, "invalid boolean 'maybe'"),
    (["--repo=x", "--root=/r", "--rep=x"], {}, "unrecognized arguments: --rep=x"),
])
def test_configuration_errors(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(options.ConfigError, match=re.escape(message)):
        options.parse(argv, env)


def test_credentials_are_moved_out_of_the_repo_url() -> None:
    opts = options.parse(["--repo=https://me:p%40ss@example.com/app.git", "--root=/r"], {})

    assert (opts.repo, opts.username, opts.password) == (
        "https://example.com/app.git", "me", "p@ss")


def test_readme_documents_every_option() -> None:
    readme = README.read_text()
    rows = {line.split("|")[2].strip(" `"): line for line in readme.splitlines()
            if line.startswith("| ") and line.count("|") >= 5}
    for flag, env, default, _help in options.describe():
        assert env in rows, f"{env} has no row in the README's table"
        assert flag is None or f"`{flag}`" in rows[env], flag
        assert f"`{default}`" in rows[env], f"{env}: default {default} not documented"
