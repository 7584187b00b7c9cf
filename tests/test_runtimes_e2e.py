"""Each runtime deployed by `git push`, on the local backend and (marker docker) on Docker."""

from __future__ import annotations

import pytest

from helpers import SAMPLES, commit_change, get_text, git, sample_repo

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
    assert text in (get_text(url) or "")
    commit_change(repo, path, text, text.replace("paas", "paas, edited"), "edit")
    cp.push(repo, name)
    assert "paas, edited" in (get_text(url) or "")
    app = cp.api("GET", f"/apps/{name}").json()
    assert app["latest"]["status"] == "live" and app["traffic"] == traffic
    assert cp.api("DELETE", f"/apps/{name}").status_code == 200


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sample", [pytest.param("hello-node", marks=pytest.mark.node), "hello-static"])
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
    pushed = cp.push(repo, "unknown", check=False)
    assert pushed.returncode != 0
    assert "remote: paas: failed: cannot tell the runtime: no requirements.txt" in pushed.stderr
    release = cp.api("GET", "/apps/unknown").json()["latest"]
    assert release["status"] == "failed" and "cannot tell the runtime" in release["reason"]
    assert cp.api("GET", "/apps/unknown").json()["state"] == "failed"
    assert cp.api("DELETE", "/apps/unknown").status_code == 200


def test_a_revision_that_raises_on_import_keeps_the_old_one_serving(control_plane, tmp_path):
    cp = control_plane
    repo = sample_repo("hello-flask", tmp_path / "broken")
    manifest = (SAMPLES / "hello-flask" / "paas.yaml").read_text().replace("name: hello-flask", "name: broken")
    url = cp.create(manifest)["url"]
    cp.push(repo, "broken")
    assert "Hello from paas!" in (get_text(url) or "")
    app_py = repo / "app.py"
    app_py.write_text(app_py.read_text() + '\nraise RuntimeError("broken on purpose")\n')
    git("commit", "-q", "-am", "break it", cwd=repo)
    pushed = cp.push(repo, "broken", check=False)
    assert pushed.returncode != 0 and "broken on purpose" in pushed.stderr

    release = cp.api("GET", "/apps/broken/releases").json()["releases"][0]
    assert release["number"] == 2 and release["status"] == "failed"
    assert "broken on purpose" in release["reason"] and release["message"] == "break it"
    assert "Hello from paas!" in get_text(url)
    status = cp.api("GET", "/apps/broken").json()
    assert status["state"] == "serving" and status["revision"] != release["revision"]
    assert cp.api("DELETE", "/apps/broken").status_code == 200
