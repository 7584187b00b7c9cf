"""Pods of composable sidecars on the local backend: the platform adds its default sidecars
to every pod (an app may decline one), topz lists the pod's own processes by container, and
a git-sync told of pushes by a signal goes live as a push to one with `POST /sync` does."""

from __future__ import annotations

import os

import pytest

from helpers import (
    ControlPlane,
    get_text,
    processes_under,
    sample_repo,
    set_text,
    stdlib_app,
    stdlib_manifest,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def platform(tmp_path, deps_cache):
    """A control plane whose platform adds topz to every pod."""
    cp = ControlPlane(tmp_path / "data", tmp_path / "cli-config", cache=deps_cache)
    cp.env = cp.env | {"PAAS_DEFAULT_SIDECARS": "topz"}
    cp.start()
    yield cp
    cp.stop()
    wait_for(lambda: not processes_under(cp.data_dir / "pods"), 15, what="no pod process left")


def sidecars(cp, app: str) -> list[dict]:
    return cp.api("GET", f"/apps/{app}").json()["sidecars"]


def containers(cp, app: str) -> dict[str, str]:
    return {c["name"]: c["state"] for c in cp.api("GET", f"/apps/{app}").json()["containers"]}


def test_the_platforms_sidecars_join_every_pod_unless_declined(platform, tmp_path):
    cp = platform
    cp.create("name: with-topz\n")
    cp.create("name: without-topz\ndecline_sidecars: [topz]\n")
    wait_for(lambda: containers(cp, "with-topz").get("topz") == "running", 30, what="topz injected")
    assert sidecars(cp, "with-topz") == [{"name": "topz", "from_platform": True, "state": "running"}]
    wait_for(lambda: containers(cp, "without-topz"), 30, what="the other pod up")
    assert set(containers(cp, "without-topz")) == {"git-sync", "runtime"}
    assert "sidecars:  topz (platform)" in cp.cli("status", "with-topz").stdout.splitlines()
    assert "sidecars:  -" in cp.cli("status", "without-topz").stdout.splitlines()


def test_changing_the_defaults_and_restarting_rolls_the_pods(platform, tmp_path):
    cp = platform
    repo = stdlib_app(tmp_path / "rolled", "one")
    url = cp.create(stdlib_manifest("rolled"))["url"]
    cp.push(repo, "rolled")
    wait_for(lambda: "topz" in containers(cp, "rolled"), 30, what="topz in the pod")
    cp.stop()
    cp.env = cp.env | {"PAAS_DEFAULT_SIDECARS": ""}
    cp.start()
    wait_for(lambda: set(containers(cp, "rolled")) == {"git-sync", "runtime"}, 30, what="the pod without topz")
    wait_for(lambda: get_text(url) == "one", 60, 0.1, "still the same release")


def test_topz_lists_the_pods_own_processes_by_container(platform, tmp_path):
    cp = platform
    repo = sample_repo("hello-flask", tmp_path / "busy")
    manifest = (tmp_path / "busy" / "paas.yaml").read_text().replace("name: hello-flask", "name: busy")
    cp.create(manifest)
    cp.push(repo, "busy")
    cp.create("name: neighbour\n")  # another pod: its processes are not this pod's
    wait_for(lambda: containers(cp, "neighbour").get("topz") == "running", 30, what="the neighbour up")
    found = wait_for(lambda: cp.api("GET", "/apps/busy/processes").json().get("processes"), 30, 0.2, "topz answering")
    by_container = {p["container"] for p in found}
    assert by_container == {"git-sync", "runtime", "topz"}
    workers = [p for p in found if p["container"] == "runtime" and "gunicorn" in p["command"]]
    assert len(workers) >= 3  # the master and its two workers
    ours = set(processes_under(cp.data_dir / "pods" / "busy"))
    assert {p["pid"] for p in found} <= ours | {p["pid"] for p in found if p["container"] == "topz"}
    assert not any(str(cp.data_dir / "pods" / "neighbour") in p["command"] for p in found)
    assert all(isinstance(p["cpu_percent"], float) and p["rss"] > 0 for p in found)


def test_processes_of_a_pod_without_topz_say_how_to_add_it(control_plane):
    control_plane.create("name: no-topz\n")
    answer = control_plane.api("GET", "/apps/no-topz/processes")
    assert answer.status_code == 409
    assert answer.json()["error"] == (
        "no-topz has no running topz sidecar to list its processes: add `sidecars: [topz]` to its manifest, "
        "or make it a platform default (PAAS_DEFAULT_SIDECARS=topz)"
    )
    shown = control_plane.cli("ps", "no-topz")
    assert shown.returncode == 1 and shown.stderr.startswith("error: no-topz has no running topz sidecar")
    assert control_plane.api("DELETE", "/apps/no-topz").status_code == 200


def test_an_unknown_sidecar_is_refused_with_the_list_of_available_ones(client, auth):
    answer = client.post("/api/v1/apps", headers=auth, data="name: typo\nsidecars: [tpoz]\n")
    assert answer.status_code == 400
    assert answer.get_json()["details"] == ["sidecars: unknown sidecar 'tpoz'; available: config, https, topz"]
    declined = client.post("/api/v1/apps", headers=auth, data="name: typo\ndecline_sidecars: [nope]\n")
    assert declined.get_json()["details"] == ["decline_sidecars: unknown sidecar 'nope'; available: config, https, topz"]


def test_an_unknown_default_sidecar_stops_paas_up_in_one_line(tmp_path):
    cp = ControlPlane(tmp_path / "data", tmp_path / "cli-config")
    env = cp.env | {"PAAS_DEFAULT_SIDECARS": "topz,nope"}
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "paas.cli", "up", "--port", str(cp.port)], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr == "error: PAAS_DEFAULT_SIDECARS: unknown sidecar 'nope'; available: config, https, topz\n"


def test_a_git_sync_told_by_signal_goes_live_on_push(tmp_path, deps_cache):
    cp = ControlPlane(tmp_path / "data", tmp_path / "cli-config", cache=deps_cache)
    cp.env = cp.env | {"PAAS_SYNC_TRIGGER": "signal"}
    cp.start()
    try:
        repo = stdlib_app(tmp_path / "signalled", "one")
        url = cp.create(stdlib_manifest("signalled"))["url"]
        cp.push(repo, "signalled")
        assert get_text(url) == "one"
        set_text(repo, "two")
        pushed = cp.push(repo, "signalled")
        assert "paas: v2 live at" in pushed.stderr and get_text(url) == "two"
        log = (cp.data_dir / "pods" / "signalled" / "logs" / "git-sync.log").read_text()
        assert log.count("received SIGHUP, syncing") >= 1  # pushed by the signal, not by its 30 s poll
        assert "POST /sync" not in log
    finally:
        cp.stop()
        wait_for(lambda: not processes_under(cp.data_dir / "pods"), 15, what="no pod process left")
    assert os.path.exists(cp.log)


@pytest.mark.docker
def test_a_git_sync_told_by_signal_goes_live_on_push_on_docker(tmp_path, pod_images):
    import docker

    from helpers import docker_control_plane_in

    with docker_control_plane_in(tmp_path, PAAS_SYNC_TRIGGER="signal") as cp:
        repo = stdlib_app(tmp_path / "signalled", "one")
        url = cp.create(stdlib_manifest("signalled"))["url"]
        cp.push(repo, "signalled")
        set_text(repo, "two")
        pushed = cp.push(repo, "signalled")
        assert "paas: v2 live at" in pushed.stderr and get_text(url) == "two"
        logs = docker.from_env().containers.get("paas-signalled-git-sync").logs().decode()
        assert "received SIGHUP, syncing" in logs
