"""`paas status` and `paas list` tell the truth: what serves and, apart, what was tried last;
crashes; why git-sync can't fetch; an app that listens on the wrong port; an empty
repository; a detected runtime; and nothing an app writes into its volume is believed."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from gitserver import GitServer, Upstream
from helpers import (
    SAMPLES,
    break_app,
    get_text,
    git,
    head_of,
    sample_repo,
    stdlib_app,
    stdlib_manifest,
    wait_for,
)

pytestmark = pytest.mark.slow


def status(cp, name: str) -> dict:
    return cp.api("GET", f"/apps/{name}").json()


def test_status_and_list_say_what_serves_and_what_was_tried_last(control_plane, tmp_path):
    cp = control_plane
    repo = stdlib_app(tmp_path / "truth", "one")
    cp.create(stdlib_manifest("truth"))
    cp.push(repo, "truth")
    good = head_of(repo)
    broken = break_app(repo)
    cp.push(repo, "truth", check=False)

    text = cp.cli("status", "truth").stdout.splitlines()
    assert "state:     serving" in text
    assert any(line.startswith(f"serving:   v1 {good[:12]} 'one' (since ") for line in text), text
    assert "latest:    v2 failed" in text
    assert f"last failure (v2, {broken[:12]}):" in text
    assert "  RuntimeError: broken on purpose" in text
    listed = cp.cli("list").stdout.splitlines()
    assert listed[0].split() == ["NAME", "STATE", "SERVING", "LATEST", "URL"]
    row = next(line.split() for line in listed if line.startswith("truth "))
    assert row[:5] == ["truth", "serving", "v1", "v2", "failed"]


def test_a_crash_of_the_serving_process_shows_in_text(control_plane, tmp_path):
    cp = control_plane
    repo = stdlib_app(tmp_path / "crashy", "one")
    url = cp.create(stdlib_manifest("crashy"))["url"]
    cp.push(repo, "crashy")
    app_pid = next(int(p) for p in os.listdir("/proc") if p.isdigit() and _is_app(int(p), "crashy"))
    os.kill(app_pid, signal.SIGKILL)
    wait_for(lambda: get_text(url) == "one" and status(cp, "crashy")["crashes"] == 1, 30, 0.1, "restarted, observed")
    shown = cp.cli("status", "crashy").stdout
    # The runtime runs the command under `sh -c`: the shell reports the kill as 128 + 9.
    assert "crashes:   1 (last: exited with code 137 after " in shown


def _is_app(pid: int, app: str) -> bool:
    """Whether ``pid`` is the app's own process (`python server.py`) in the app's pod."""
    try:
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    except OSError:
        return False
    return cmdline[-2:-1] == [b"server.py"] and any(v.startswith(b"PAAS_LOCAL_POD=") and v.endswith(f"/{app}/runtime".encode()) for v in environ)


def test_an_unreachable_remote_repository_is_an_error_with_git_syncs_reason(control_plane):
    cp = control_plane
    cp.create('name: unreachable\nsource: {repo: "http://127.0.0.1:9/nope.git", period: 1}\n')
    app = wait_for(lambda: (a := status(cp, "unreachable"))["state"] == "error" and a, 30, 0.1, "state error")
    assert "Couldn't connect to server" in app["sync_error"] or "Failed to connect" in app["sync_error"]
    assert f"git-sync:  {app['sync_error']}" in cp.cli("status", "unreachable").stdout


def test_an_empty_remote_repository_says_so(control_plane, tmp_path):
    cp = control_plane
    with GitServer(tmp_path / "srv", username=None, password=None) as server:
        subprocess.run(["git", "init", "-q", "--bare", str(server.root / "empty.git")], check=True)
        cp.create(f'name: empty-remote\nsource: {{repo: "{server.url("empty.git")}", period: 1}}\n')
        app = wait_for(lambda: (a := status(cp, "empty-remote"))["state"] == "error" and a, 30, 0.1, "state error")
        assert "the repository is empty" in app["sync_error"], app["sync_error"]


def test_an_empty_hosted_repository_fails_saying_so(control_plane, tmp_path):
    cp = control_plane
    repo = tmp_path / "nothing"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    git("commit", "-q", "--allow-empty", "-m", "nothing yet", cwd=repo)
    cp.create("name: nothing\n")
    pushed = cp.push(repo, "nothing", check=False)
    assert pushed.returncode != 0
    assert "remote: paas: failed: the revision holds no files (an empty repository)" in pushed.stderr


def test_an_app_listening_elsewhere_fails_naming_port_and_where_it_listens(control_plane, tmp_path):
    cp = control_plane
    repo = stdlib_app(tmp_path / "elsewhere", "one")
    server = repo / "server.py"
    server.write_text(server.read_text().replace('int(os.environ["PORT"])', "5733"))
    git("commit", "-q", "-am", "listen on 5733", cwd=repo)
    cp.create(stdlib_manifest("elsewhere", timeout=2))
    pushed = cp.push(repo, "elsewhere", check=False)
    assert pushed.returncode != 0
    reason = cp.api("GET", "/apps/elsewhere/releases").json()["releases"][0]["reason"]
    first = reason.splitlines()[0]
    assert first.startswith("the app did not answer GET / with a status below 500 within 2 s (no answer: ")
    assert "the app must listen on $PORT (here PORT=" in first and "but it listens on 127.0.0.1:5733 instead" in first
    assert first in pushed.stderr


def test_a_detected_runtime_says_which(control_plane, tmp_path):
    cp = control_plane
    repo = sample_repo("hello-static", tmp_path / "detect-me")
    cp.create("name: detect-me\n")
    cp.push(repo, "detect-me")
    wait_for(lambda: status(cp, "detect-me")["runtime"] == "static", 10, what="the runtime observed")
    assert "runtime:   static (detected)" in cp.cli("status", "detect-me").stdout.splitlines()
    assert "runtime static (detected)" in cp.api("GET", "/apps/detect-me/logs").text


def test_a_revision_an_app_writes_into_its_volume_never_becomes_a_release(control_plane, tmp_path):
    cp = control_plane
    repo = sample_repo("hello-static", tmp_path / "forged")
    url = cp.create((SAMPLES / "hello-static" / "paas.yaml").read_text().replace("hello-static", "forged"))["url"]
    cp.push(repo, "forged")
    # What a process sharing the volume could do: check out a revision of its own and move
    # the link git-sync publishes — the runtime then serves it.
    git_dir = cp.data_dir / "pods" / "forged" / "workspace" / "git"
    fake = "f" * 40
    (git_dir / ".worktrees" / fake).mkdir(parents=True)
    (git_dir / ".worktrees" / fake / "index.html").write_text("<p>not deployed by anyone</p>")
    (git_dir / "forged-link").symlink_to(f".worktrees/{fake}")
    (git_dir / "forged-link").replace(git_dir / "current")
    wait_for(lambda: "not deployed by anyone" in (get_text(url) or ""), 30, 0.1, "the runtime serving it")
    wait_for(lambda: status(cp, "forged")["events"][0]["kind"] == "error", 10, 0.1, "the pod's claim noticed")
    releases = cp.api("GET", "/apps/forged/releases").json()["releases"]
    assert [r["revision"] for r in releases] == [head_of(repo)] and releases[0]["status"] == "live"
    events = [e["message"] for e in status(cp, "forged")["events"]]
    assert f"the pod reports serving {fake[:12]}, a revision this app never deployed" in events


def test_a_remote_revision_is_a_release_once_the_remote_vouches_for_it(control_plane, tmp_path):
    cp = control_plane
    with GitServer(tmp_path / "srv") as server:
        upstream = Upstream(server, "site", tmp_path / "work")
        first = upstream.commit("<p>remote one</p>")
        repo = upstream.url.replace("http://", "http://git:git@")
        manifest = f'name: remote-site\nruntime: static\nsource: {{repo: "{repo}", period: 1}}\n'
        url = cp.create(manifest)["url"]
        wait_for(lambda: "remote one" in (get_text(url) or ""), 60, 0.1, "the remote revision served")
        wait_for(lambda: status(cp, "remote-site")["serving"], 10, 0.1, "its release recorded")
        releases = cp.api("GET", "/apps/remote-site/releases").json()["releases"]
        assert [(r["revision"], r["status"], r["message"]) for r in releases] == [(first, "live", "synced from main")]
