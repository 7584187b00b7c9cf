"""Each runtime deployed by `git push`, on the local backend and (marker docker) on Docker."""

from __future__ import annotations

import pytest

from helpers import SAMPLES, commit_change, get_text, git, sample_repo, wait_for

pytestmark = pytest.mark.slow
# sample: file to edit, text served before the edit, how the runtime's port reaches it
CASES = {
    "hello-node": ("server.js", "from paas", "direct"),
    "hello-static": ("index.html", "Hello from paas!", "proxied"),
}
BACKENDS = [
    pytest.param("control_plane", id="local"),
    pytest.param("docker_control_plane", id="docker", marks=pytest.mark.docker),
]


def deploy_and_edit(cp, tmp_path, sample: str, name: str, manifest: str) -> None:
    path, text, traffic = CASES[sample]
    repo = sample_repo(sample, tmp_path / name)
    url = cp.create(manifest)["url"]
    cp.push(repo, name)
    wait_for(lambda: text in (get_text(url) or ""), 180, 0.2, f"{name} served")
    commit_change(repo, path, text, text.replace("paas", "paas, edited"), "edit")
    cp.push(repo, name)
    wait_for(lambda: "paas, edited" in (get_text(url) or ""), 60, 0.1, f"{name} edit served")
    wait_for(lambda: cp.api("GET", f"/apps/{name}").json()["release"]["status"] == "live", 10, what="live")
    assert cp.api("GET", f"/apps/{name}").json()["runtime_state"]["traffic"] == traffic
    assert cp.api("DELETE", f"/apps/{name}").status_code == 200


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sample", sorted(CASES))
def test_sample_deploys_by_push(request, tmp_path, backend, sample):
    cp = request.getfixturevalue(backend)
    manifest = (SAMPLES / sample / "paas.yaml").read_text()
    deploy_and_edit(cp, tmp_path, sample, sample, manifest)


@pytest.mark.parametrize("backend", BACKENDS)
def test_runtime_detected_when_the_manifest_omits_it(request, tmp_path, backend):
    cp = request.getfixturevalue(backend)
    manifest = (SAMPLES / "hello-static" / "paas.yaml").read_text().replace("runtime: static\n", "")
    manifest = manifest.replace("name: hello-static", "name: detected")
    assert "runtime:" not in manifest
    deploy_and_edit(cp, tmp_path, "hello-static", "detected", manifest)


def test_code_no_runtime_can_serve_fails_the_release_with_the_reason(control_plane, tmp_path):
    cp = control_plane
    repo = sample_repo("hello-static", tmp_path / "unknown")
    (repo / "index.html").rename(repo / "readme.txt")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "no app here", cwd=repo)
    cp.create("name: unknown\n")
    cp.push(repo, "unknown")

    def failed():
        release = cp.api("GET", "/apps/unknown").json()["release"]
        return release["status"] == "failed" and release

    release = wait_for(failed, 60, 0.2, "the release marked failed")
    assert "runtime" in release["message"]
    assert cp.api("DELETE", "/apps/unknown").status_code == 200


def test_a_revision_that_raises_on_import_keeps_the_old_one_serving(control_plane, tmp_path):
    cp = control_plane
    repo = sample_repo("hello-flask", tmp_path / "broken")
    manifest = (SAMPLES / "hello-flask" / "paas.yaml").read_text().replace("name: hello-flask", "name: broken")
    url = cp.create(manifest)["url"]
    cp.push(repo, "broken")
    wait_for(lambda: "Hello from paas!" in (get_text(url) or ""), 180, 0.2, "first revision served")
    app_py = repo / "app.py"
    app_py.write_text(app_py.read_text() + '\nraise RuntimeError("broken on purpose")\n')
    git("commit", "-q", "-am", "break it", cwd=repo)
    cp.push(repo, "broken")

    def failed():
        release = cp.api("GET", "/apps/broken/releases").json()["releases"][0]
        return release["status"] == "failed" and release

    release = wait_for(failed, 60, 0.2, "release v2 marked failed")
    assert release["number"] == 2 and "broken on purpose" in release["message"]
    assert "Hello from paas!" in get_text(url)
    status = cp.api("GET", "/apps/broken").json()
    assert status["state"] == "running" and status["revision"] != release["revision"]
    assert cp.api("DELETE", "/apps/broken").status_code == 200
