"""Nothing open that shouldn't be, and secrets stay secret: private instance ports and
published app ports on loopback; the pod's deploy token and a repository password reach
git-sync as a file only, and appear in no API answer, event, log or process environment."""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import subprocess
from pathlib import Path

import docker
import pytest

from gitserver import GitServer, Upstream
from helpers import SAMPLES, get_text, git, sample_repo, set_text, stdlib_app, stdlib_manifest, wait_for

pytestmark = pytest.mark.slow
PASSWORD = "s3cret-Pa55word"


def pod_processes(cp, app: str) -> list[int]:
    marker = f"/{app}/".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(v.startswith(b"PAAS_LOCAL_POD=") and marker in v for v in environ):
            found.append(int(pid))
    return found


def listening(pids: list[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket these processes listen on, read from /proc."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                address, port = fields[1].split(":")
                raw = bytes.fromhex(address)
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.add((socket.inet_ntop(family, raw), int(port, 16)))
    return found


NODE_APP = """const http = require("node:http");
http.createServer((req, res) => res.end("node on loopback")).listen(Number(process.env.PORT));
"""


@pytest.mark.parametrize("sample", ["hello-flask", pytest.param("node-default-listen", marks=pytest.mark.node)])
def test_every_port_of_a_local_pod_is_on_loopback(control_plane, tmp_path, sample):
    cp = control_plane
    if sample == "hello-flask":  # gunicorn's default with PORT set is 0.0.0.0:$PORT
        repo = sample_repo("hello-flask", tmp_path / "open-flask")
        name, manifest, text = "open-flask", (SAMPLES / "hello-flask" / "paas.yaml").read_text(), "Hello from paas!"
        manifest = manifest.replace("name: hello-flask", f"name: {name}")
    else:  # Node's listen(port) with no address listens on every interface
        repo = tmp_path / "open-node"
        repo.mkdir()
        (repo / "server.js").write_text(NODE_APP)
        (repo / "package.json").write_text(json.dumps({"name": "o", "version": "1.0.0", "scripts": {"start": "node server.js"}}))
        git("init", "-q", "-b", "main", cwd=repo)
        git("add", ".", cwd=repo)
        git("commit", "-q", "-m", "node", cwd=repo)
        name, manifest, text = "open-node", "name: open-node\nruntime: node\n", "node on loopback"
    url = cp.create(manifest)["url"]
    cp.push(repo, name)
    assert text in (get_text(url) or "")
    ports = listening(pod_processes(cp, name))
    assert len(ports) >= 3, ports  # git-sync's HTTP, the public port, the instance's private port
    assert {address for address, _ in ports} == {"127.0.0.1"}, ports
    assert cp.api("DELETE", f"/apps/{name}").status_code == 200


def everything_shown(cp, name: str) -> str:
    """Every answer and text a person or script could read about the app."""
    parts = [
        cp.api("GET", "/apps").text,
        cp.api("GET", f"/apps/{name}").text,
        cp.api("GET", f"/apps/{name}/releases").text,
        cp.api("GET", f"/apps/{name}/logs", params={"tail": 1000}).text,
        cp.cli("status", name).stdout,
        cp.cli("--json", "list").stdout,
        cp.log.read_text(),
    ]
    return "\n".join(parts)


def test_a_hosted_apps_deploy_token_is_a_file_for_git_sync_only(control_plane, tmp_path):
    cp = control_plane
    repo = stdlib_app(tmp_path / "tokenfile", "one")
    cp.create(stdlib_manifest("tokenfile"))
    cp.push(repo, "tokenfile")
    secret = cp.data_dir / "pods" / "tokenfile" / "secrets" / "git-password"
    token = secret.read_text()
    # Read-only for its pod's user alone (an app's own uid when paas up runs as root).
    assert len(token) > 20 and (secret.stat().st_mode & 0o777) == 0o400
    assert (secret.parent.stat().st_mode & 0o777) == (0o500 if os.geteuid() == 0 else 0o700)
    for pid in pod_processes(cp, "tokenfile"):
        seen = Path(f"/proc/{pid}/environ").read_bytes() + Path(f"/proc/{pid}/cmdline").read_bytes()
        assert token.encode() not in seen, f"pid {pid} holds the deploy token"
    assert token not in everything_shown(cp, "tokenfile")


def test_a_repository_password_is_kept_apart_used_and_never_shown(control_plane, tmp_path):
    cp = control_plane
    with GitServer(tmp_path / "srv", username="bob", password=PASSWORD) as server:
        upstream = Upstream(server, "private", tmp_path / "work")
        upstream.commit("<p>private site</p>")
        repo = upstream.url.replace("http://", f"http://bob:{PASSWORD}@")
        app = cp.create(f'name: private\nruntime: static\nsource: {{repo: "{repo}", period: 1}}\n')
        assert app["manifest"]["source"]["repo"] == upstream.url.replace("http://", "http://bob:***@")
        wait_for(lambda: "private site" in (get_text(app["url"]) or ""), 60, 0.1, "synced with the password")
        wait_for(lambda: cp.api("GET", "/apps/private").json()["serving"], 10, 0.1, "the release recorded")
        assert PASSWORD not in everything_shown(cp, "private")
        for pid in pod_processes(cp, "private"):
            seen = Path(f"/proc/{pid}/environ").read_bytes() + Path(f"/proc/{pid}/cmdline").read_bytes()
            assert PASSWORD.encode() not in seen
        assert (cp.data_dir / "pods" / "private" / "secrets" / "git-password").read_text() == PASSWORD
        assert cp.api("DELETE", "/apps/private").status_code == 200


def received_passwords(server: GitServer) -> set[str]:
    """Every password a git server was sent (HTTP basic), as its log of requests holds them."""
    found = set()
    for headers in server.request_headers:
        scheme, _, encoded = headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            found.add(base64.b64decode(encoded).decode().partition(":")[2])
    return found


def test_a_repository_password_never_follows_the_url_to_another_host(control_plane, tmp_path):
    cp = control_plane
    other = "0ther-h0st-pa55"
    with GitServer(tmp_path / "first", username="bob", password=PASSWORD) as first, \
            GitServer(tmp_path / "second", username="bob", password=other, host="127.0.0.2") as second:
        Upstream(first, "moving", tmp_path / "work-first").commit("<p>from the first host</p>")
        moved = Upstream(second, "moving", tmp_path / "work-second")
        moved.commit("<p>from the second host</p>")
        repo = f"http://bob:{PASSWORD}@127.0.0.1:{first.port}/moving.git"
        app = cp.create(f'name: moving\nruntime: static\nsource: {{repo: "{repo}", period: 1}}\n')
        wait_for(lambda: "first host" in (get_text(app["url"]) or ""), 60, 0.1, "synced from the first host")

        # The same user on another host: refused in one sentence, nothing stored, nothing sent there.
        manifest = tmp_path / "moved.yaml"
        manifest.write_text(f'name: moving\nruntime: static\nsource: {{repo: "{moved.url.replace("http://", "http://bob@")}", period: 1}}\n')
        refused = cp.cli("apply", "-f", str(manifest))
        assert refused.returncode == 1
        assert refused.stderr == (
            f"error: source.repo: the stored repository password is for http://bob@127.0.0.1:{first.port} and is "
            f"not sent to http://bob@127.0.0.2:{second.port}: give that repository's password "
            "(https://USER:PASSWORD@HOST/… or `paas apply --password-file FILE`), or an empty --password-file to "
            "apply without one\n")
        assert cp.api("GET", "/apps/moving").json()["manifest"]["source"]["repo"] == repo.replace(PASSWORD, "***")
        cp.after_passes(3)
        assert "first host" in (get_text(app["url"]) or "")

        # With the second host's own password (a file), the app moves, and the first password stays home.
        password_file = tmp_path / "second-password"
        password_file.write_text(other + "\n")
        applied = cp.cli("apply", "-f", str(manifest), "--password-file", str(password_file))
        assert applied.returncode == 0, applied.stderr
        assert "  source.password: *** -> *** (new)" in applied.stdout.splitlines()
        wait_for(lambda: "second host" in (get_text(app["url"]) or ""), 60, 0.1, "synced from the second host")
        assert received_passwords(second) == {other}
        assert PASSWORD in received_passwords(first)  # the log is real: the first host got its own
        assert (cp.data_dir / "pods" / "moving" / "secrets" / "git-password").read_text() == other
        shown = everything_shown(cp, "moving") + applied.stdout + applied.stderr
        assert PASSWORD not in shown and other not in shown
        assert cp.api("DELETE", "/apps/moving").status_code == 200


def test_a_requirements_link_out_of_the_app_fails_the_push_and_shows_nothing_of_its_target(control_plane, tmp_path):
    """A repository's `requirements.txt -> $PAAS_DATA/token` printed the admin token in the
    push (pip quoting the line it could not parse), the release, the API and the console."""
    cp = control_plane
    secret = cp.data_dir / "probe-secret"
    token = "=secret-" + secrets.token_hex(12)  # no requirement pip could take: it would quote it
    secret.write_text(token + "\n")
    repo = stdlib_app(tmp_path / "linked", "one")
    app = cp.create(stdlib_manifest("linked"))
    cp.push(repo, "linked")
    (repo / "requirements.txt").unlink()
    (repo / "requirements.txt").symlink_to(secret)
    set_text(repo, "two")
    pushed = cp.push(repo, "linked", check=False)
    assert pushed.returncode != 0
    sentence = (f"requirements.txt is a symlink to a path outside the app ({secret}): commit the file itself, "
                "or a link to a file inside the repository")
    assert f"remote: paas: failed: {sentence}" in [line.rstrip() for line in pushed.stderr.splitlines()]
    failed = cp.api("GET", "/apps/linked/releases").json()["releases"][0]
    assert (failed["number"], failed["status"], failed["reason"]) == (2, "failed", sentence)
    assert token not in pushed.stdout + pushed.stderr + everything_shown(cp, "linked")
    assert get_text(app["url"]) == "one"  # the previous release keeps serving

    # A link that stays inside the repository is fine.
    (repo / "deps").mkdir()
    (repo / "deps" / "requirements.txt").write_text("")
    (repo / "requirements.txt").unlink()
    (repo / "requirements.txt").symlink_to("deps/requirements.txt")
    git("add", "-A", cwd=repo)
    set_text(repo, "three")
    assert "live" in cp.push(repo, "linked").stderr
    assert get_text(app["url"]) == "three"
    assert cp.api("DELETE", "/apps/linked").status_code == 200


@pytest.mark.docker
def test_docker_inspect_shows_no_secret(docker_control_plane, tmp_path):
    cp = docker_control_plane
    repo = stdlib_app(tmp_path / "inspected", "one")
    cp.create(stdlib_manifest("inspected"))
    cp.push(repo, "inspected")
    client = docker.from_env()
    found = client.containers.list(all=True, filters={"label": "paas.app=inspected"})
    sync = next(c for c in found if c.labels["paas.container"] == "git-sync")
    token = sync.exec_run(["cat", "/etc/paas/secrets/git-password"]).output.decode()
    assert len(token) > 20
    mode = sync.exec_run(["stat", "-c", "%a %u", "/etc/paas/secrets/git-password"]).output.decode().split()
    assert mode == ["400", "65533"]
    inspected = subprocess.run(["docker", "inspect", *[c.id for c in found]], capture_output=True, text=True, check=True)
    assert token not in inspected.stdout and "GITSYNC_PASSWORD=" not in inspected.stdout
    assert cp.api("DELETE", "/apps/inspected").status_code == 200


@pytest.mark.parametrize(
    ("repo", "problem"),
    [
        ("ssh://-oProxyCommand=touch${IFS}/tmp/x/repo", "must not have a host starting with '-'"),
        ("git@-oProxyCommand:repo", "must not have a host starting with '-'"),
        ("git@example.com:-upload-pack=x", "must not have a path starting with '-'"),
        ("https://example.com/-x.git", "must not have a path starting with '-'"),
        ("ssh://me:pw@example.com/repo.git", "may carry a password only in an http(s) URL"),
    ],
)
def test_repository_urls_git_would_take_for_options_are_refused(client, auth, repo, problem):
    response = client.post("/api/v1/apps", headers=auth, data=f'name: opt\nsource: {{repo: "{repo}"}}\n')
    assert response.status_code == 400
    why = " (ssh authenticates with a key)" if "password" in problem else " (git would take it for an option)"
    assert response.get_json()["details"] == [f"source.repo: {problem}{why}"]
