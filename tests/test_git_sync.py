"""The git-sync sidecar, run as a real process against real git servers on loopback
(the sidecar handle and fixtures: tests/gitsync_harness.py)."""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from gitserver import GitServer, Upstream, git
from gitsync_harness import PASSWORD, USERNAME, Remote, StartSidecar
from helpers import free_port, wait_for

pytestmark = pytest.mark.slow

# --- the layout and the first sync -------------------------------------------------


def test_one_time_sync_publishes_a_relative_link_to_the_commit_worktree(
    remote: Remote, start_sidecar: StartSidecar
) -> None:
    commit = remote.commit("hello v1")
    sidecar = start_sidecar(*remote.args, "--one-time", http=False)

    assert sidecar.wait_exit() == 0, sidecar.output
    assert sidecar.link.name == f"{remote.name}.git", "--link defaults to the URL's last element"
    assert os.readlink(sidecar.link) == f".worktrees/{commit}"
    assert (sidecar.link / "index.html").read_text() == "hello v1"
    assert (sidecar.root / ".git").is_dir()
    assert sidecar.worktrees() == [commit]
    assert (sidecar.link / ".git").read_text().startswith("gitdir: ../../.git/worktrees/")
    assert f"synced HEAD -> {commit}" in sidecar.output


def test_restart_reuses_root_and_replaces_leftover_and_broken_worktrees(
    upstream: Remote, start_sidecar: StartSidecar
) -> None:
    first = upstream.commit("v1")
    initial = start_sidecar(*upstream.args, "--one-time", http=False)
    assert initial.wait_exit() == 0, initial.output
    root = initial.root
    git("config", "test.marker", "kept", cwd=root)  # survives only if .git is reused
    second = upstream.commit("v2")
    leftover = root / ".worktrees" / second  # as if a previous run died mid-checkout
    leftover.mkdir()
    (leftover / "junk").write_text("half-written")

    sidecar = start_sidecar(*upstream.args, "--one-time", http=False)

    assert sidecar.wait_exit() == 0, sidecar.output
    assert sidecar.linked_hash() == second
    assert (sidecar.link / "index.html").read_text() == "v2"
    assert not (sidecar.link / "junk").exists()
    assert not (root / ".worktrees" / first).exists()
    assert git("config", "test.marker", cwd=root) == "kept"

    worktree = root / ".worktrees" / second
    inode = worktree.stat().st_ino
    again = start_sidecar(*upstream.args, "--one-time", http=False)
    assert again.wait_exit() == 0, again.output
    assert worktree.stat().st_ino == inode, "an unchanged commit must not be checked out again"

    (worktree / ".git").unlink()  # a corrupt worktree is rebuilt, even for the same hash
    repaired = start_sidecar(*upstream.args, "--one-time", http=False)
    assert repaired.wait_exit() == 0, repaired.output
    assert (worktree / ".git").is_file()
    assert (sidecar.link / "index.html").read_text() == "v2"


# --- following the remote -----------------------------------------------------------


def test_poll_picks_up_a_new_commit_and_removes_the_old_worktree(
    remote: Remote, start_sidecar: StartSidecar
) -> None:
    first = remote.commit("v1")
    sidecar = start_sidecar(*remote.args, "--period=100ms")
    sidecar.wait_linked(first)

    second = remote.commit("v2")

    sidecar.wait_linked(second)
    assert (sidecar.link / "index.html").read_text() == "v2"
    wait_for(lambda: sidecar.worktrees() == [second], what="old worktree removal", timeout=10)


def test_force_push_publishes_the_rewritten_commit(
    remote: Remote, start_sidecar: StartSidecar
) -> None:
    base = remote.commit("v1")
    remote.commit("v2")
    sidecar = start_sidecar(*remote.args, "--period=1h")
    sidecar.wait_ready()

    remote.reset_hard(base)
    rewritten = remote.commit("v2, rewritten")  # pushed with --force

    assert sidecar.post_sync().json() == {"hash": rewritten, "changed": True}
    assert (sidecar.link / "index.html").read_text() == "v2, rewritten"


def test_a_restart_with_another_branch_switches_the_link(
    upstream: Remote, start_sidecar: StartSidecar
) -> None:
    main = upstream.commit("on main")
    git("checkout", "--quiet", "-b", "feature", cwd=upstream.work)
    (upstream.work / "index.html").write_text("on feature")
    git("commit", "--quiet", "-am", "feature", cwd=upstream.work)
    git("push", "--quiet", "origin", "feature", cwd=upstream.work)
    feature = git("rev-parse", "HEAD", cwd=upstream.work)
    on_main = start_sidecar(*upstream.args, "--ref=main", "--one-time", http=False)
    assert on_main.wait_exit() == 0, on_main.output
    assert on_main.linked_hash() == main

    on_feature = start_sidecar(*upstream.args, "--ref=feature", "--one-time", http=False)

    assert on_feature.wait_exit() == 0, on_feature.output
    assert on_feature.linked_hash() == feature
    assert (on_feature.link / "index.html").read_text() == "on feature"
    assert on_feature.worktrees() == [feature]


@pytest.mark.parametrize("kind", ["branch", "tag", "annotated tag", "commit hash"])
def test_ref_may_be_a_branch_a_tag_or_a_commit_hash(
    kind: str, remote: Remote, start_sidecar: StartSidecar
) -> None:
    wanted = remote.commit("wanted")
    git("tag", "v0.9", cwd=remote.work)
    git("tag", "--annotate", "-m", "release", "v1.0", cwd=remote.work)
    git("push", "--quiet", "origin", "v0.9", "v1.0", "main:stable", cwd=remote.work)
    remote.commit("later")  # main moves on; the ref must not follow it
    ref = {"branch": "stable", "tag": "v0.9", "annotated tag": "v1.0", "commit hash": wanted}[kind]

    sidecar = start_sidecar(*remote.args, f"--ref={ref}", "--one-time", http=False)

    assert sidecar.wait_exit() == 0, sidecar.output
    assert sidecar.linked_hash() == wanted
    assert (sidecar.link / "index.html").read_text() == "wanted"


def test_depth_one_fetches_one_commit_and_depth_zero_all_of_them(
    remote: Remote, start_sidecar: StartSidecar
) -> None:
    for n in range(3):
        head = remote.commit(f"v{n}")
    shallow = start_sidecar(*remote.args, "--one-time", http=False)
    assert shallow.wait_exit() == 0, shallow.output
    assert git("rev-list", "--count", head, cwd=shallow.root) == "1"
    assert (shallow.root / ".git" / "shallow").exists()

    full = start_sidecar(*remote.args, "--one-time", "--depth=0", http=False)

    assert full.wait_exit() == 0, full.output
    assert git("rev-list", "--count", head, cwd=full.root) == "3"
    assert not (full.root / ".git" / "shallow").exists()


# --- POST /sync -------------------------------------------------------------------------


def test_post_sync_moves_the_link_before_answering(
    upstream: Remote, start_sidecar: StartSidecar
) -> None:
    upstream.commit("v1")
    sidecar = start_sidecar(*upstream.args, "--period=1h")
    sidecar.wait_ready()
    second = upstream.commit("v2")

    response = sidecar.post_sync()

    assert response.status_code == 200, response.text
    assert response.json() == {"hash": second, "changed": True}
    assert sidecar.linked_hash() == second
    assert (sidecar.link / "index.html").read_text() == "v2"
    assert sidecar.post_sync().json() == {"hash": second, "changed": False}
    assert requests.get(sidecar.url("/sync"), timeout=5).status_code == 405


def test_concurrent_post_sync_requests_share_syncs(
    upstream: Remote, start_sidecar: StartSidecar
) -> None:
    upstream.commit("v1")
    sidecar = start_sidecar(*upstream.args, "--period=1h")
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
    upstream: Remote, start_sidecar: StartSidecar
) -> None:
    upstream.commit("v0")
    sidecar = start_sidecar(*upstream.args, "--period=1h")
    sidecar.wait_ready()
    latencies = []
    with requests.Session() as session:  # keep-alive, as the control plane does
        for i in range(1, 6):
            commit = upstream.commit(f"v{i}")
            start = time.perf_counter()
            answer = session.post(sidecar.url("/sync"), timeout=10).json()
            latencies.append(time.perf_counter() - start)
            assert answer == {"hash": commit, "changed": True}

    assert statistics.median(latencies) < 0.2, latencies


# --- failures -------------------------------------------------------------------------


def test_a_bad_ref_exits_non_zero_with_gits_own_message(
    remote: Remote, start_sidecar: StartSidecar
) -> None:
    remote.commit("v1")
    sidecar = start_sidecar(*remote.args, "--ref=no-such-branch", "--one-time", http=False)

    assert sidecar.wait_exit() != 0
    assert "couldn't find remote ref no-such-branch" in sidecar.output
    assert "Traceback" not in sidecar.output
    assert not os.path.lexists(sidecar.link)


def test_by_default_the_first_failure_is_fatal(start_sidecar: StartSidecar) -> None:
    sidecar = start_sidecar(f"--repo=http://127.0.0.1:{free_port()}/gone.git")

    assert sidecar.wait_exit() == 1
    errors = [line for line in sidecar.output.splitlines() if "error:" in line]
    assert len(errors) == 1, sidecar.output
    assert "git fetch failed: fatal: unable to access" in errors[0]


def test_max_failures_exits_after_that_many_consecutive_failures_with_the_remote_down(
    tmp_path: Path, start_sidecar: StartSidecar
) -> None:
    (tmp_path / "served").mkdir()
    with GitServer(tmp_path / "served", USERNAME, PASSWORD) as server:
        flaky = Remote(server, "flaky", tmp_path / "flaky-work", auth=True)
        flaky.commit("v1")
        sidecar = start_sidecar(*flaky.args, "--max-failures=3", "--period=100ms")
        sidecar.wait_ready()
    # The server is down now: three failures in a row, then exit.

    assert sidecar.wait_exit() == 1
    assert "(1 consecutive)" in sidecar.output
    assert "(2 consecutive)" in sidecar.output
    assert "giving up after 3 consecutive failure(s) (--max-failures=3)" in sidecar.output
    assert "(3 consecutive)" not in sidecar.output


def test_init_max_failures_and_init_period_govern_until_the_first_sync(
    git_server: GitServer, tmp_path: Path, start_sidecar: StartSidecar
) -> None:
    gone = start_sidecar(f"--repo={git_server.url('never.git')}", f"--username={USERNAME}",
                         "--init-max-failures=2", "--max-failures=-1", "--init-period=50ms",
                         http=False, root=tmp_path / "gone")
    assert gone.wait_exit() == 1
    assert "giving up after 2 consecutive failure(s) (--init-max-failures=2)" in gone.output

    # --period is an hour, but until the first success --init-period applies.
    url = git_server.url("late.git")
    sidecar = start_sidecar(f"--repo={url}", f"--username={USERNAME}", "--period=1h",
                            "--init-period=100ms", "--max-failures=-1")
    wait_for(lambda: "(2 consecutive), retrying in 0.1s" in sidecar.output,
             what="two fast retries", timeout=10)
    commit = Upstream(git_server, "late", tmp_path / "late-work").commit("late")
    sidecar.wait_linked(commit)


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
    assert sidecar.metric('git_sync_count_total{status="success"}') == 1
    assert sidecar.proc.poll() is None


# --- metrics --------------------------------------------------------------------------


def test_metrics_count_syncs_by_status_and_fetches(
    upstream: Remote, start_sidecar: StartSidecar
) -> None:
    upstream.commit("v1")
    sidecar = start_sidecar(*upstream.args, "--period=1h")
    sidecar.wait_ready()
    sidecar.post_sync()  # nothing new: a no-op
    upstream.commit("v2")
    sidecar.post_sync()

    text = sidecar.get("/metrics").text

    assert "# TYPE git_sync_duration_seconds summary" in text
    assert "# TYPE git_sync_count_total counter" in text
    assert "# TYPE git_fetch_count_total counter" in text
    assert "# TYPE process_resident_memory_bytes gauge" in text
    # As upstream's, written as Go writes numbers: `2`, not `2.0`.
    assert re.search(r'^git_sync_count_total\{status="success"\} 2$', text, re.M), text
    assert re.search(r'^git_sync_count_total\{status="noop"\} 1$', text, re.M)
    assert 'status="error"' not in text  # a series appears once it is first counted
    assert re.search(r'^git_sync_duration_seconds_count\{status="success"\} 2$', text, re.M)
    assert sidecar.metric('git_sync_duration_seconds_sum{status="noop"}') > 0
    assert re.search(r"^git_fetch_count_total 2$", text, re.M)  # the fetches that updated
    scraped = sidecar.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert scraped.headers["Content-Type"].startswith("application/openmetrics-text")
    assert scraped.text.endswith("# EOF\n")
    assert re.search(r'^git_sync_count_total\{status="success"\} 2\.0$', scraped.text, re.M)


# --- credentials ----------------------------------------------------------------------


@pytest.mark.parametrize("source", ["GITSYNC_PASSWORD", "--password-file"])
def test_password_reaches_git_but_no_argv_and_no_log(
    source: str, upstream: Remote, start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    commit = upstream.commit("secret stuff")
    argv_log = tmp_path / "git-argv.log"
    wrapper = tmp_path / "git-wrapper"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {argv_log}\nexec git "$@"\n')
    wrapper.chmod(0o755)
    args = [*upstream.args, "--one-time", f"--git={wrapper}", "-v", "2",
            f"--error-file={tmp_path / 'error.json'}"]
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


def test_a_wrong_password_fails_without_showing_it_anywhere(
    upstream: Remote, start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    upstream.commit("v1")
    sidecar = start_sidecar(*upstream.args, "--max-failures=1", "-v", "2",
                            "--error-file=errors/last.json", password="wrong-Pa55word",
                            http=False)

    assert sidecar.wait_exit() != 0
    assert "Authentication failed" in sidecar.output
    assert "wrong-Pa55word" not in sidecar.output
    assert "wrong-Pa55word" not in (sidecar.root / "errors" / "last.json").read_text()


def test_the_password_file_is_read_again_before_every_sync(
    upstream: Remote, start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    commit = upstream.commit("v1")
    password_file = tmp_path / "password"
    password_file.write_text("not-yet-rotated")
    sidecar = start_sidecar(*upstream.args, f"--password-file={password_file}",
                            "--max-failures=-1", "--period=100ms", password=None)
    wait_for(lambda: "Authentication failed" in sidecar.output, what="a failed sync", timeout=10)

    password_file.write_text(PASSWORD)

    sidecar.wait_linked(commit)
    assert PASSWORD not in sidecar.output
    assert PASSWORD not in sidecar.get("/metrics").text


def test_credentials_in_the_repo_url_are_used_but_never_logged(
    upstream: Remote, start_sidecar: StartSidecar
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
    signum: int, upstream: Remote, start_sidecar: StartSidecar
) -> None:
    upstream.commit("v1")
    sidecar = start_sidecar(*upstream.args)
    sidecar.wait_ready()

    start = time.monotonic()
    sidecar.proc.send_signal(signum)

    assert sidecar.wait_exit(timeout=5) == 0
    assert time.monotonic() - start < 1.0
    assert "Traceback" not in sidecar.output


def test_sync_on_signal_syncs_at_once(remote: Remote, start_sidecar: StartSidecar) -> None:
    remote.commit("v1")
    sidecar = start_sidecar(*remote.args, "--period=1h", "--sync-on-signal=HUP")
    sidecar.wait_ready()
    second = remote.commit("v2")

    sidecar.proc.send_signal(signal.SIGHUP)

    sidecar.wait_linked(second)
    assert "received SIGHUP, syncing" in sidecar.output
    assert sidecar.proc.poll() is None, "the sync signal must not stop git-sync"


def test_an_unknown_flag_is_a_one_line_fatal_error(start_sidecar: StartSidecar) -> None:
    sidecar = start_sidecar("--repo=http://example.invalid/x.git", "--no-such-flag", http=False)

    assert sidecar.wait_exit() == 1
    assert sidecar.output.splitlines() == [
        "git-sync: error: unrecognized arguments: --no-such-flag"
    ]


def test_options_come_from_the_environment_and_flags_win(
    upstream: Remote, start_sidecar: StartSidecar
) -> None:
    commit = upstream.commit("v1")
    env = {"GITSYNC_REPO": upstream.url, "GITSYNC_USERNAME": USERNAME,
           "GITSYNC_ONE_TIME": "true", "GITSYNC_REF": "no-such-branch"}

    sidecar = start_sidecar("--ref=main", env=env, http=False)

    assert sidecar.wait_exit() == 0, sidecar.output
    assert sidecar.linked_hash() == commit


def test_v3_flags_and_variables_still_work_with_a_warning(
    upstream: Remote, start_sidecar: StartSidecar
) -> None:
    upstream.commit("main")
    git("push", "--quiet", "origin", "main:stable", cwd=upstream.work)
    stable = upstream.commit("moved on")
    git("push", "--quiet", "--force", "origin", "main:stable", cwd=upstream.work)
    upstream.commit("later")

    sidecar = start_sidecar(f"--repo={upstream.url}", "--branch=stable", "--dest=current",
                            "--wait=0.5", "--one-time", http=False,
                            env={"GIT_SYNC_USERNAME": USERNAME, "GITSYNC_PASSWORD": PASSWORD})

    assert sidecar.wait_exit() == 0, sidecar.output
    assert os.readlink(sidecar.root / "current") == f".worktrees/{stable}"
    for warning in ("Flag --branch has been deprecated, use --ref instead",
                    "setting --link from deprecated --dest",
                    "setting --period from deprecated --wait",
                    "env $GIT_SYNC_USERNAME has been deprecated, use $GITSYNC_USERNAME instead"):
        assert f"git-sync: warning: {warning}" in sidecar.output


def test_help_and_man_print_and_exit_zero() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITSYNC_")}
    for flag, wanted in (("--help", "--stale-worktree-timeout"), ("--man", "SYNOPSIS"),
                         ("--version", "0.1.0")):
        result = subprocess.run([sys.executable, "-m", "git_sync", flag], env=env,
                                capture_output=True, text=True, timeout=10)
        assert result.returncode == 0, result.stderr
        assert wanted in result.stdout
