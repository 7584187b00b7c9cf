"""git-sync run the way upstream v4.7 is run: flags its Deployments set, repositories on
shared volumes owned by other users, partial clones, per-URL credentials, an askpass
server, sparse checkouts, `/metrics` read as text, the pprof endpoints.

Real processes against real git transports on loopback; the fixtures come from
gitsync_harness (via conftest).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gitserver import GIT_ENV, GitServer, LocalRepos, Upstream, git
from gitsync_harness import PASSWORD, USERNAME, Remote, StartSidecar
from helpers import wait_for

pytestmark = pytest.mark.slow


def chown_tree(path: Path, uid: int) -> None:
    for dirpath, _dirs, filenames in os.walk(path):
        os.chown(dirpath, uid, uid)
        for name in filenames:
            os.lchown(os.path.join(dirpath, name), uid, uid)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the repository to another uid")
@pytest.mark.parametrize("form", ["path", "file://"])
def test_a_local_repository_owned_by_another_uid_syncs(form: str, tmp_path: Path, start_sidecar: StartSidecar) -> None:
    shared = Upstream(LocalRepos(tmp_path / "volume"), "shared", tmp_path / "work")
    commit = shared.commit("on a shared volume")
    chown_tree(shared.bare, 4242)  # as a repository another container wrote
    url = str(shared.bare) if form == "path" else f"file://{shared.bare}"

    sidecar = start_sidecar(f"--repo={url}", "--one-time", "--link=app", http=False)

    assert sidecar.wait_exit() == 0, sidecar.output
    assert sidecar.linked_hash() == commit
    assert "dubious ownership" not in sidecar.output


def test_a_users_gitconfig_changes_nothing(upstream: Remote, start_sidecar: StartSidecar, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text('[url "http://127.0.0.1:9/"]\n\tinsteadOf = http://\n')
    commit = upstream.commit("v1")
    env = {k: v for k, v in GIT_ENV.items() if k != "GIT_CONFIG_GLOBAL"} | {"HOME": str(home)}
    sidecar = start_sidecar(*upstream.args, "--one-time", http=False, env=env)
    assert sidecar.wait_exit() == 0, sidecar.output
    assert sidecar.linked_hash() == commit


def rev_list_missing(root: Path) -> list[str]:
    out = subprocess.run(["git", "rev-list", "--objects", "--all", "--missing=print"], cwd=root,
                         env={**os.environ, **GIT_ENV}, capture_output=True, text=True, check=True).stdout
    return [line[1:] for line in out.splitlines() if line.startswith("?")]


def test_a_blobless_partial_clone_across_updates(upstream: Remote, start_sidecar: StartSidecar) -> None:
    git("config", "uploadpack.allowFilter", "true", cwd=upstream.bare)  # as GitHub and GitLab allow
    upstream.commit("x" * 100_000, path="big.bin")
    big = git("rev-parse", "HEAD:big.bin", cwd=upstream.work)
    git("rm", "-q", "big.bin", cwd=upstream.work)
    git("commit", "-q", "-m", "drop big", cwd=upstream.work)
    second = upstream.commit("v2")
    sidecar = start_sidecar(*upstream.args, "--filter=blob:none", "--depth=0", "--period=100ms")
    sidecar.wait_linked(second)
    assert (sidecar.link / "index.html").read_text() == "v2"
    assert git("config", "remote.origin.promisor", cwd=sidecar.root) == "true"
    assert big in rev_list_missing(sidecar.root)  # never fetched: no commit checked out needs it

    third = upstream.commit("v3", path="page.html")
    sidecar.wait_linked(third)
    assert (sidecar.link / "page.html").read_text() == "v3"  # fetched lazily, with the credentials
    assert (sidecar.link / "index.html").read_text() == "v2"
    assert big in rev_list_missing(sidecar.root)


# --- credentials --------------------------------------------------------------------


def test_a_submodule_on_another_server_with_its_own_credential(
    upstream: Remote, start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    with GitServer(tmp_path / "other", "libuser", "lib-Pa55") as other:
        lib = Upstream(other, "lib", tmp_path / "lib-work")
        lib.commit("the library", path="lib.txt")
        authed = lib.url.replace("http://", "http://libuser:lib-Pa55@")
        git("-c", "protocol.file.allow=always", "submodule", "add", "-q", authed, "lib", cwd=upstream.work)
        git("config", "-f", ".gitmodules", "submodule.lib.url", lib.url, cwd=upstream.work)
        commit = upstream.commit("with a submodule")
        secret = tmp_path / "lib-password"
        secret.write_text("lib-Pa55")
        credential = json.dumps({"url": other.base_url, "username": "libuser", "password-file": str(secret)})

        sidecar = start_sidecar(*upstream.args, f"--credential={credential}", "--one-time", http=False)

        assert sidecar.wait_exit() == 0, sidecar.output
        assert sidecar.linked_hash() == commit
        assert (sidecar.link / "lib" / "lib.txt").read_text() == "the library"
        assert "lib-Pa55" not in sidecar.output and PASSWORD not in sidecar.output


class _Askpass(BaseHTTPRequestHandler):
    answers: list[tuple[int, str]] = []
    calls: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).calls.append(self.path)
        status, body = type(self).answers[0] if type(self).answers else (200, "")
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def askpass() -> Iterator[tuple[str, type[_Askpass]]]:
    handler = type("Askpass", (_Askpass,), {"answers": [], "calls": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/creds", handler
    server.shutdown()
    server.server_close()


def test_askpass_url_is_asked_before_every_sync(
    upstream: Remote, start_sidecar: StartSidecar, askpass: tuple[str, type[_Askpass]]
) -> None:
    url, handler = askpass
    handler.answers.append((200, f"username={USERNAME}\npassword={PASSWORD}\nexpiry=later\n"))
    first = upstream.commit("v1")
    sidecar = start_sidecar(f"--repo={upstream.url}", f"--askpass-url={url}", "--period=100ms", "--max-failures=-1")
    sidecar.wait_linked(first)
    second = upstream.commit("v2")
    sidecar.wait_linked(second)
    assert len(handler.calls) >= 2 and set(handler.calls) == {"/creds"}
    assert sidecar.metric('git_sync_askpass_calls{status="success"}') >= 2

    handler.answers[0] = (500, "the metadata server is down")
    wait_for(lambda: sidecar.metric('git_sync_askpass_calls{status="error"}', absent=0) >= 1, 10, what="a failed ask")
    wait_for(lambda: "auth URL returned status 500, body: 'the metadata server is down'" in sidecar.output, 10,
             what="the failure logged")
    assert PASSWORD not in sidecar.output


# --- what is checked out ------------------------------------------------------------


def test_a_sparse_checkout_file_says_what_is_checked_out(
    upstream: Remote, start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    upstream.commit("guide", path="docs/guide.md")
    upstream.commit("code", path="src/app.py")
    third = upstream.commit("more docs", path="docs/more.md")
    sparse = tmp_path / "sparse-checkout"
    sparse.write_text("/docs/\n")
    sidecar = start_sidecar(*upstream.args, f"--sparse-checkout-file={sparse}", "--one-time", http=False)
    assert sidecar.wait_exit() == 0, sidecar.output
    assert sidecar.linked_hash() == third
    assert sorted(p.name for p in sidecar.link.rglob("*") if p.is_file() and ".git" not in p.parts) == [
        "guide.md", "more.md"]


def loose_objects(root: Path) -> int:
    return sum(1 for d in (root / ".git" / "objects").iterdir() if len(d.name) == 2 for _ in d.iterdir())


@pytest.mark.parametrize(("args", "packed"), [((), True), (("--git-gc=auto",), False)])
def test_git_gc_defaults_to_upstreams_always(
    args: tuple[str, ...], packed: bool, upstream: Remote, start_sidecar: StartSidecar
) -> None:
    upstream.commit("v1")
    second = upstream.commit("v2")
    sidecar = start_sidecar(*upstream.args, *args, "--one-time", http=False)
    assert sidecar.wait_exit() == 0, sidecar.output
    assert sidecar.linked_hash() == second
    assert (loose_objects(sidecar.root) == 0) is packed


# --- hooks, HTTP --------------------------------------------------------------------


def test_the_pre_publish_exechook_runs_in_the_new_worktree(
    upstream: Remote, start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    record = tmp_path / "pre-publish.log"
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\necho "$GITSYNC_HASH $(pwd)" >> {record}\n')
    hook.chmod(0o755)
    commit = upstream.commit("v1")
    sidecar = start_sidecar(*upstream.args, f"--pre-publish-exechook-command={hook}", "--one-time")
    assert sidecar.wait_exit() == 0, sidecar.output
    assert record.read_text().split() == [commit, str(sidecar.root / ".worktrees" / commit)]

    failing = tmp_path / "fail.sh"
    failing.write_text("#!/bin/sh\nexit 3\n")
    failing.chmod(0o755)
    second = upstream.commit("v2")
    failed = start_sidecar(*upstream.args, f"--pre-publish-exechook-command={failing}", "--one-time",
                           http=False, root=tmp_path / "root2")
    assert failed.wait_exit() == 1  # as upstream: --one-time fails with its first run
    assert failed.linked_hash() == second  # and, as upstream's, the hook does not hold the link back
    assert "pre-publish-exechook failed" in failed.output


def test_http_pprof_serves_every_threads_stack(upstream: Remote, start_sidecar: StartSidecar) -> None:
    upstream.commit("v1")
    sidecar = start_sidecar(*upstream.args, "--http-pprof", "--period=1h")
    sidecar.wait_ready()
    stacks = sidecar.get("/debug/pprof/goroutine?debug=2")
    assert stacks.status_code == 200 and "(sync) [running]" in stacks.text and "(http) [running]" in stacks.text
    assert "in _loop" in stacks.text  # the sync loop's own frame
    index = sidecar.get("/debug/pprof/")
    assert index.status_code == 200 and "goroutine" in index.text
    assert sidecar.get("/debug/pprof/heap").status_code == 404
    plain = start_sidecar(*upstream.args, "--period=1h", root=sidecar.root.parent / "plain")
    plain.wait_ready()
    assert plain.get("/debug/pprof/goroutine").text == ""  # without the flag: the readiness probe


def test_cookie_file_needs_upstreams_cookie_file(upstream: Remote, start_sidecar: StartSidecar) -> None:
    if os.path.exists("/etc/git-secret/cookie_file"):
        pytest.skip("this machine has a cookie file at upstream's path")
    upstream.commit("v1")
    sidecar = start_sidecar(*upstream.args, "--cookie-file", "--one-time", http=False)
    assert sidecar.wait_exit() == 1
    assert "can't access git cookiefile /etc/git-secret/cookie_file" in sidecar.output


def test_github_app_flags_are_accepted_with_a_clear_line(
    upstream: Remote, start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    commit = upstream.commit("v1")
    key = tmp_path / "app.pem"
    key.write_text("not used")
    sidecar = start_sidecar(f"--repo={upstream.url}", "--github-app-client-id=Iv1.x", "--github-app-installation-id=7",
                            f"--github-app-private-key-file={key}", f"--credential={json.dumps({'url': upstream.url, 'username': USERNAME, 'password': PASSWORD})}",
                            "--one-time", http=False)
    assert sidecar.wait_exit() == 0, sidecar.output
    assert sidecar.linked_hash() == commit
    assert "GitHub app authentication is not supported by this git-sync" in sidecar.output
