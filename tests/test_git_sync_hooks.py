"""git-sync telling others: webhooks, exechooks, --touch-file, --error-file; and what it
keeps on disk: stale worktrees, submodules, group-writable files; and how it reaches
git: SSH keys and known_hosts, --git-config.

Real processes against real git servers on loopback; the fixtures come from
gitsync_harness (via conftest).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gitserver import GitServer, Upstream, git
from gitsync_harness import PASSWORD, USERNAME, Remote, StartSidecar
from helpers import wait_for

pytestmark = pytest.mark.slow


class WebhookReceiver:
    """A loopback HTTP server recording each call, answering with `statuses` in turn (then 200)."""

    def __init__(self, statuses: list[int] | None = None, link: Path | None = None) -> None:
        self.statuses = list(statuses or [])
        self.link = link
        self.calls: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self._record()

            def do_PUT(self) -> None:  # noqa: N802
                self._record()

            def _record(self) -> None:
                linked = ""
                if receiver.link is not None and os.path.lexists(receiver.link):
                    linked = Path(os.readlink(receiver.link)).name
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.calls.append({"method": self.command, "path": self.path,
                                       "hash": self.headers.get("Gitsync-Hash", ""),
                                       "linked": linked, "status": str(status)})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def hashes(self) -> list[str]:
        return [call["hash"] for call in self.calls]

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


# --- webhooks ---------------------------------------------------------------------------


def test_the_webhook_is_called_with_the_hash_after_the_link_moved(
    upstream: Remote, start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    first = upstream.commit("v1")
    link = tmp_path / "root" / "current"
    with WebhookReceiver(link=link) as receiver:
        sidecar = start_sidecar(*upstream.args, "--link=current", "--period=1h",
                                f"--webhook-url={receiver.url}", "--webhook-method=PUT")
        wait_for(lambda: receiver.hashes() == [first], what="the first webhook call", timeout=10)
        second = upstream.commit("v2")

        assert sidecar.post_sync().json()["hash"] == second

        wait_for(lambda: receiver.hashes() == [first, second], what="a call for v2", timeout=10)
    assert [(c["method"], c["path"], c["linked"]) for c in receiver.calls] == [
        ("PUT", "/hook", first), ("PUT", "/hook", second)]
    wait_for(lambda: sidecar.metric(
        'git_sync_hook_run_count_total{name="webhook",status="success"}') == 2,
        what="two successful webhook runs", timeout=5)


def test_a_failing_webhook_is_retried_and_the_newest_hash_wins(
    upstream: Remote, start_sidecar: StartSidecar
) -> None:
    first = upstream.commit("v1")
    with WebhookReceiver(statuses=[500, 503]) as receiver:
        sidecar = start_sidecar(*upstream.args, "--period=1h", f"--webhook-url={receiver.url}",
                                "--webhook-backoff=1s")
        wait_for(lambda: receiver.hashes() == [first], what="the first (failing) call",
                 timeout=10)
        second = upstream.commit("v2")  # published during the backoff
        assert sidecar.post_sync().json()["hash"] == second

        wait_for(lambda: len(receiver.calls) == 3, what="two retries", timeout=10)
    assert receiver.hashes() == [first, second, second]
    assert [c["status"] for c in receiver.calls] == ["500", "503", "200"]
    assert sidecar.metric('git_sync_hook_run_count_total{name="webhook",status="error"}') == 2
    assert sidecar.metric('git_sync_hook_run_count_total{name="webhook",status="success"}') == 1
    assert "received response code 500, expected 200" in sidecar.output


def test_webhook_success_status_zero_is_fire_and_forget(
    upstream: Remote, start_sidecar: StartSidecar
) -> None:
    upstream.commit("v1")
    with WebhookReceiver(statuses=[500] * 5) as receiver:
        sidecar = start_sidecar(*upstream.args, "--period=1h", f"--webhook-url={receiver.url}",
                                "--webhook-success-status=0")
        wait_for(lambda: sidecar.metric(
            'git_sync_hook_run_count_total{name="webhook",status="success"}') == 1,
            what="one fire-and-forget call", timeout=10)
    assert len(receiver.calls) == 1


# --- exechooks --------------------------------------------------------------------------


def test_the_exechook_runs_in_the_new_worktree_and_again_at_start_up(
    upstream: Remote, start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    log = tmp_path / "hook.log"
    hook = script(tmp_path / "hook.sh",
                  f'echo "$GITSYNC_HASH $(pwd) ${{GITSYNC_PASSWORD:-no-password}}" >> {log}\n')
    first = upstream.commit("v1")
    sidecar = start_sidecar(*upstream.args, "--period=1h", f"--exechook-command={hook}")
    wait_for(lambda: log.exists() and len(log.read_text().splitlines()) == 1,
             what="the first exechook run", timeout=10)
    second = upstream.commit("v2")
    sidecar.post_sync()
    wait_for(lambda: len(log.read_text().splitlines()) == 2, what="a run for v2", timeout=10)
    sidecar.proc.send_signal(signal.SIGTERM)
    assert sidecar.wait_exit() == 0

    restarted = start_sidecar(*upstream.args, "--period=1h", f"--exechook-command={hook}")

    wait_for(lambda: len(log.read_text().splitlines()) == 3, what="a run at start-up",
             timeout=10)
    worktrees = restarted.root.resolve() / ".worktrees"
    assert log.read_text().splitlines() == [
        f"{first} {worktrees / first} no-password",
        f"{second} {worktrees / second} no-password",
        f"{second} {worktrees / second} no-password",
    ]


def test_a_failing_exechook_is_retried_until_it_succeeds(
    upstream: Remote, start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    tries = tmp_path / "tries"
    hook = script(tmp_path / "hook.sh",
                  f'echo x >> {tries}\n'
                  f'[ "$(wc -l < {tries})" -ge 2 ] || {{ echo "not yet" >&2; exit 3; }}\n')
    upstream.commit("v1")

    sidecar = start_sidecar(*upstream.args, "--period=1h", f"--exechook-command={hook}",
                            "--exechook-backoff=1s")

    wait_for(lambda: sidecar.metric(
        'git_sync_hook_run_count_total{name="exechook",status="success"}') == 1,
        what="a successful retry", timeout=10)
    assert sidecar.metric('git_sync_hook_run_count_total{name="exechook",status="error"}') == 1
    assert "exited with status 3: not yet" in sidecar.output
    assert len(tries.read_text().splitlines()) == 2


def test_one_time_waits_for_the_hooks_and_fails_if_one_failed(
    upstream: Remote, start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    upstream.commit("v1")
    marker = tmp_path / "ran"
    ok = script(tmp_path / "ok.sh", f"sleep 0.3; touch {marker}\n")
    failing = script(tmp_path / "fail.sh", "exit 1\n")

    good = start_sidecar(*upstream.args, "--one-time", f"--exechook-command={ok}", http=False,
                         root=tmp_path / "good")
    assert good.wait_exit() == 0, good.output
    assert marker.exists(), "--one-time must wait for the hook"

    bad = start_sidecar(*upstream.args, "--one-time", f"--exechook-command={failing}",
                        http=False, root=tmp_path / "bad")
    assert bad.wait_exit() == 1, bad.output
    assert "exechook failed" in bad.output


# --- touch file, error file -----------------------------------------------------------


def test_the_touch_file_is_touched_when_a_commit_is_published(
    upstream: Remote, start_sidecar: StartSidecar
) -> None:
    upstream.commit("v1")
    sidecar = start_sidecar(*upstream.args, "--period=50ms", "--touch-file=state/synced")
    touch_file = sidecar.root / "state" / "synced"
    wait_for(touch_file.exists, what="the touch file", timeout=10)
    touched = touch_file.stat().st_mtime_ns
    noops = sidecar.metric('git_sync_count_total{status="noop"}', absent=0)
    wait_for(lambda: sidecar.metric('git_sync_count_total{status="noop"}', absent=0) >= noops + 3,
             what="no-op polls", timeout=10)
    assert touch_file.stat().st_mtime_ns == touched, "a no-op sync must not touch it"

    upstream.commit("v2")

    wait_for(lambda: touch_file.stat().st_mtime_ns > touched, what="a touch for v2", timeout=10)


def test_the_error_file_holds_the_last_error_until_a_sync_succeeds(
    git_server: GitServer, start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    error_file = tmp_path / "errors" / "git-sync.json"
    sidecar = start_sidecar(f"--repo={git_server.url('later.git')}", f"--username={USERNAME}",
                            "--max-failures=-1", "--period=100ms", f"--error-file={error_file}")
    wait_for(error_file.exists, what="the error file", timeout=10)

    error = json.loads(error_file.read_text())

    assert set(error) == {"Msg", "Err", "Args"}
    assert error["Msg"].startswith("sync of HEAD failed")
    assert "git fetch failed" in error["Err"] and "not found" in error["Err"]
    assert error["Args"]["failCount"] >= 1
    assert PASSWORD not in error_file.read_text()
    commit = Upstream(git_server, "later", tmp_path / "later-work").commit("v1")
    sidecar.wait_linked(commit)
    wait_for(lambda: not error_file.exists(), what="the error file to go", timeout=10)


# --- worktrees on disk ------------------------------------------------------------------


def test_stale_worktree_timeout_keeps_the_old_worktree_that_long(
    upstream: Remote, start_sidecar: StartSidecar
) -> None:
    first = upstream.commit("v1")
    sidecar = start_sidecar(*upstream.args, "--period=1h", "--stale-worktree-timeout=1500ms")
    sidecar.wait_ready()
    old = sidecar.root / ".worktrees" / first
    second = upstream.commit("v2")

    assert sidecar.post_sync().json() == {"hash": second, "changed": True}
    swapped = time.monotonic()

    assert (old / "index.html").read_text() == "v1", "the old version is still being drained"
    assert sidecar.post_sync().json()["changed"] is False  # a cleanup pass, too early for it
    assert (old / "index.html").exists()
    wait_for(lambda: not old.exists(), what="the stale worktree's removal", timeout=10)
    assert time.monotonic() - swapped >= 1.4
    assert sidecar.worktrees() == [second]
    # The directory goes first, then `git worktree prune` makes git forget it.
    wait_for(lambda: first not in git("worktree", "list", cwd=sidecar.root), what="git to forget the old worktree",
             timeout=10)


def test_submodules_are_checked_out_recursively_unless_off(
    git_server: GitServer, start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    lib = Upstream(git_server, "lib", tmp_path / "lib-work")
    lib.commit("library code", path="lib.txt")
    app = Upstream(git_server, "app", tmp_path / "app-work")
    app.commit("app code")
    git("-c", "protocol.file.allow=always", "submodule", "add", "--quiet", str(lib.bare), "lib",
        cwd=app.work)
    git("config", "-f", ".gitmodules", "submodule.lib.url", lib.url, cwd=app.work)
    git("commit", "--quiet", "-am", "add lib", cwd=app.work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=app.work)
    args = (f"--repo={app.url}", f"--username={USERNAME}", "--one-time", "--link=app")

    recursive = start_sidecar(*args, http=False, root=tmp_path / "recursive")
    off = start_sidecar(*args, "--submodules=off", http=False, root=tmp_path / "off")

    assert recursive.wait_exit() == 0, recursive.output
    assert (recursive.link / "lib" / "lib.txt").read_text() == "library code"
    assert off.wait_exit() == 0, off.output
    assert (off.link / "lib").is_dir() and not (off.link / "lib" / "lib.txt").exists()
    assert PASSWORD not in recursive.output


@pytest.mark.parametrize("group_write", [False, True])
def test_group_write_makes_everything_group_writable(
    group_write: bool, upstream: Remote, start_sidecar: StartSidecar
) -> None:
    upstream.commit("v1")
    sidecar = start_sidecar(*upstream.args, "--one-time",
                            *(["--group-write"] if group_write else []), http=False)
    assert sidecar.wait_exit() == 0, sidecar.output

    for path in (sidecar.link / "index.html", sidecar.link, sidecar.root / ".git" / "config"):
        assert bool(path.stat().st_mode & stat.S_IWGRP) == group_write, path


# --- how git is reached -----------------------------------------------------------------


def test_ssh_repos_use_the_keys_and_known_hosts_given(
    upstream: Remote, start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    commit = upstream.commit("over ssh")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ssh_log = tmp_path / "ssh.log"
    # A stand-in for ssh: record the arguments, run the remote command locally.
    script(bin_dir / "ssh", f'printf "%s\\n" "$*" >> {ssh_log}\n'
                            'for last in "$@"; do :; done\nexec sh -c "$last"\n')
    keys = [tmp_path / "id_one", tmp_path / "id_two"]
    for key in keys:
        key.write_text("not really a key\n")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("127.0.0.1 ssh-ed25519 AAAA\n")
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    url = f"ssh://git@127.0.0.1{upstream.bare}"

    sidecar = start_sidecar(f"--repo={url}", f"--ssh-key-file={keys[0]}",
                            f"--ssh-key-file={keys[1]}", f"--ssh-known-hosts-file={known_hosts}",
                            "--one-time", http=False, env=env)

    assert sidecar.wait_exit() == 0, sidecar.output
    assert sidecar.linked_hash() == commit
    used = ssh_log.read_text()
    assert "-o StrictHostKeyChecking=yes" in used
    assert f"-o UserKnownHostsFile={known_hosts}" in used
    assert f"-i {keys[0]} -i {keys[1]}" in used

    from_env = start_sidecar(f"--repo={url}", "--ssh-known-hosts=false", "--one-time",
                             http=False, root=tmp_path / "env",
                             env={**env, "GITSYNC_SSH_KEY_FILE": f"{keys[1]}:{keys[0]}"})
    assert from_env.wait_exit() == 0, from_env.output
    assert f"-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -i {keys[1]} -i {keys[0]}" \
        in ssh_log.read_text()

    missing = start_sidecar(f"--repo={url}", f"--ssh-key-file={tmp_path / 'nope'}",
                            f"--ssh-known-hosts-file={known_hosts}", "--one-time", http=False,
                            root=tmp_path / "missing", env=env)
    assert missing.wait_exit() == 1
    assert f"can't access SSH key file {tmp_path / 'nope'}" in missing.output


def test_git_config_reaches_every_git_command(
    upstream: Remote, git_server: GitServer, start_sidecar: StartSidecar
) -> None:
    upstream.commit("v1")
    seen = len(git_server.request_headers)

    sidecar = start_sidecar(*upstream.args, "--one-time",
                            '--git-config=http.extraHeader:X-Gitsync-Test: yes\\, really,'
                            '"test.key":"quoted, value"', http=False)

    assert sidecar.wait_exit() == 0, sidecar.output
    sent = [h.get("X-Gitsync-Test") for h in git_server.request_headers[seen:]]
    assert sent and set(sent) == {"yes, really"}


def test_a_malformed_git_config_is_a_config_error(start_sidecar: StartSidecar) -> None:
    sidecar = start_sidecar("--repo=http://example.invalid/x.git", "--git-config=novalue",
                            http=False)

    assert sidecar.wait_exit() == 1
    assert "invalid flag: --git-config: unexpected end of key" in sidecar.output

