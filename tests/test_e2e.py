"""The whole slice, as a user does it: paas up, create, git push, edit, push, delete.

One story: the tests run in file order on one app (pytest keeps a module's order), each
step starting from where the one before left it — a failed step fails the rest.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from helpers import (
    SAMPLES,
    Load,
    auth_env,
    commit_change,
    get_text,
    git,
    processes_under,
    sample_repo,
    wait_for,
)

pytestmark = pytest.mark.slow
APP = "hello-flask"


@pytest.fixture(scope="module")
def deployed(control_plane, tmp_path_factory):
    """hello-flask created from its sample manifest and pushed once."""
    repo = sample_repo(APP, tmp_path_factory.mktemp("src") / APP)
    app = control_plane.create((SAMPLES / APP / "paas.yaml").read_text())
    return control_plane, repo, app["url"]


def head(repo: Path) -> str:
    return git("rev-parse", "HEAD", cwd=repo).stdout.strip()


def releases(cp) -> list[dict]:
    return cp.api("GET", f"/apps/{APP}/releases").json()["releases"]


def status(cp) -> dict:
    return cp.api("GET", f"/apps/{APP}").json()


def test_push_deploys_then_an_edit_goes_live(deployed):
    cp, repo, url = deployed
    wait_for(lambda: status(cp)["state"] == "waiting for a push", 30, what="pod up, waiting for a push")
    pushed = cp.push(repo, APP)
    # The push is answered once the release serves, and says so.
    assert [(r["number"], r["revision"], r["status"]) for r in releases(cp)] == [(1, head(repo), "live")]
    assert f"remote: paas: v1 live at {status(cp)['urls'][0]} in " in pushed.stderr  # the router's URL
    assert "Hello from paas!" in (get_text(url) or "")

    commit_change(repo, "app.py", "from paas!", "from paas, edited!", "edit")
    cp.push(repo, APP)
    assert "from paas, edited!" in (get_text(url) or "")
    assert [r["status"] for r in releases(cp)] == ["live", "superseded"]
    app = status(cp)
    assert app["revision"] == head(repo) and app["state"] == "serving"
    assert {c["name"]: c["state"] for c in app["containers"]} == {"git-sync": "running", "runtime": "running"}
    # gunicorn accepts on the pod's port itself (the runtime's handoff), not through its proxy.
    shown = cp.cli("status", APP)
    assert shown.returncode == 0, shown.stderr
    assert "traffic:   direct (the app accepts on it)" in shown.stdout


def test_non_fast_forward_push_is_refused_and_old_release_keeps_serving(deployed):
    cp, repo, url = deployed
    before = get_text(url)
    git("reset", "-q", "--hard", "HEAD~1", cwd=repo)
    commit_change(repo, "app.py", "from paas!", "from a rewritten history!", "rewrite")
    result = cp.push(repo, APP, check=False)
    assert result.returncode != 0
    assert "non-fast-forward" in result.stderr or "rejected" in result.stderr
    git("reset", "-q", "--hard", "ORIG_HEAD", cwd=repo)  # back to what the server has
    git("fetch", "-q", f"{cp.url}/git/{APP}.git", "main", cwd=repo, env=auth_env(cp.token))
    git("reset", "-q", "--hard", "FETCH_HEAD", cwd=repo)
    assert len(releases(cp)) == 2
    assert get_text(url) == before


def test_push_to_another_branch_is_refused(deployed):
    cp, repo, url = deployed
    before = get_text(url)
    result = cp.push(repo, APP, ref="HEAD:feature", check=False)
    assert result.returncode != 0
    assert "paas: this app deploys branch 'main'" in result.stderr
    assert len(releases(cp)) == 2 and get_text(url) == before


def test_push_with_a_bad_token_or_to_an_unknown_app(deployed):
    cp, repo, _ = deployed
    bad = git("push", f"{cp.url}/git/{APP}.git", "main", cwd=repo, env=auth_env("wrong"), check=False)
    assert bad.returncode != 0 and "Authentication failed" in bad.stderr
    assert "wrong" not in bad.stderr
    unknown = git("push", f"{cp.url}/git/nope.git", "main", cwd=repo, env=auth_env(cp.token), check=False)
    assert unknown.returncode != 0 and "not found" in unknown.stderr


def test_clone_with_the_paas_credential_helper(deployed, tmp_path):
    cp, repo, _ = deployed
    helper = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "credential.helper",
              "GIT_CONFIG_VALUE_0": "!paas git-credential", "PAAS_URL": cp.url, "PAAS_TOKEN": cp.token}
    git("clone", "-q", f"{cp.url}/git/{APP}.git", str(tmp_path / "clone"), cwd=tmp_path, env=helper)
    assert head(tmp_path / "clone") == head(repo)


def test_logs_hold_every_container(deployed):
    cp, _, _ = deployed
    text = cp.api("GET", f"/apps/{APP}/logs", params={"tail": 500}).text
    assert "git-sync | " in text and "runtime | " in text
    assert cp.token not in text


def test_rollback_serves_the_previous_release_without_a_failed_request(deployed):
    cp, repo, url = deployed
    with Load(url) as load:
        wait_for(lambda: len(load.bodies) > 20, 10, what="load running")
        response = cp.api("POST", f"/apps/{APP}/rollback")
        assert response.status_code == 201, response.text
        rolled = response.json()
        assert rolled["number"] == 3 and rolled["message"] == "rollback to v1 (first)"
        wait_for(lambda: "Hello from paas!" in (get_text(url) or ""), 30, 0.1, "v1 served again")
        wait_for(lambda: releases(cp)[0]["status"] == "live", 10, what="the rollback release live")
        served_before = len(load.bodies)
        wait_for(lambda: len(load.bodies) > served_before + 20, 10, what="more load after the switch")
    assert load.failures == []
    assert [r["status"] for r in releases(cp)] == ["live", "superseded", "superseded"]
    # A later push moves forward again (the branch was never rewritten).
    commit_change(repo, "app.py", "from paas, edited!", "from paas, forward!", "forward")
    cp.push(repo, APP)
    wait_for(lambda: "from paas, forward!" in (get_text(url) or ""), 30, 0.1, "the new push served")
    assert releases(cp)[0]["number"] == 4


def test_rollback_to_a_named_release(deployed):
    cp, _, url = deployed
    response = cp.api("POST", f"/apps/{APP}/rollback", json={"revision": "v2"})
    assert response.status_code == 201, response.text
    wait_for(lambda: "from paas, edited!" in (get_text(url) or ""), 30, 0.1, "v2 served again")
    wait_for(lambda: releases(cp)[0]["status"] == "live", 10, what="the rollback release live")
    again = cp.api("POST", f"/apps/{APP}/rollback", json={"revision": "v2"})
    assert again.status_code == 400
    assert again.json()["error"] == f"{APP} serves v2 ({releases(cp)[0]['revision'][:12]}) already"


def test_a_killed_process_comes_back(deployed):
    cp, _, url = deployed
    runtime = next(c for c in status(cp)["containers"] if c["name"] == "runtime")
    os.killpg(int(runtime["id"]), signal.SIGKILL)
    wait_for(lambda: next(c for c in status(cp)["containers"] if c["name"] == "runtime")["restarts"] == 1,
             15, what="runtime restarted")
    wait_for(lambda: get_text(url), 60, 0.2, "served again after the restart")
    wait_for(lambda: any("runtime exited and was restarted" in e["message"] for e in status(cp)["events"]),
             10, what="restart recorded as an event")


def test_control_plane_restart_brings_the_app_back(deployed):
    cp, _, url = deployed
    assert cp.stop() == 0
    assert not processes_under(cp.data_dir / "pods")
    assert get_text(url, timeout=0.5) is None
    cp.start()
    wait_for(lambda: "from paas, edited!" in (get_text(url) or ""), 60, 0.2, "served after the restart")
    assert len(releases(cp)) == 5


def test_delete_stops_every_process(deployed):
    cp, _, url = deployed
    pod_dir = cp.data_dir / "pods" / APP
    assert processes_under(pod_dir)
    assert cp.api("DELETE", f"/apps/{APP}").status_code == 200
    assert not processes_under(pod_dir)
    assert not pod_dir.exists() and not (cp.data_dir / "repos" / f"{APP}.git").exists()
    assert get_text(url, timeout=0.5) is None
    assert cp.api("GET", f"/apps/{APP}").status_code == 404
