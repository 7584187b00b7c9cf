"""A control plane that stops — cleanly or killed with its whole process group — comes back
with every app serving the release that served before; failed and pending releases are
never revived; and a second control plane never takes over a data directory in use."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import docker
import pytest

from helpers import (
    ControlPlane,
    break_app,
    docker_control_plane_in,
    get_text,
    git,
    head_of,
    processes_under,
    set_text,
    stdlib_app,
    stdlib_manifest,
    wait_for,
)

pytestmark = pytest.mark.slow
STOPS = [("SIGTERM", signal.SIGTERM, False), ("SIGKILL of the process group", signal.SIGKILL, True)]


@pytest.fixture
def local_cp(tmp_path, deps_cache):
    cp = ControlPlane(tmp_path / "data", tmp_path / "cli-config", cache=deps_cache).start()
    yield cp
    cp.stop()
    wait_for(lambda: not processes_under(cp.data_dir / "pods"), 15, what="no pod process left")


@pytest.fixture
def docker_cp(tmp_path, pod_images):
    with docker_control_plane_in(tmp_path) as cp:
        yield cp


def serving(cp, app: str) -> dict | None:
    return cp.api("GET", f"/apps/{app}").json()["serving"]


def keeps_last_good_release(cp, tmp_path) -> None:
    repo = stdlib_app(tmp_path / "keep", "good")
    url = cp.create(stdlib_manifest("keep"))["url"]
    cp.push(repo, "keep")
    assert get_text(url) == "good"
    break_app(repo)
    assert cp.push(repo, "keep", check=False).returncode != 0

    for name, sig, group in STOPS:
        cp.stop(sig, group=group)
        cp.start()
        wait_for(lambda: get_text(url) == "good", 120, 0.1, f"v1 served again after {name}")
        assert serving(cp, "keep")["number"] == 1, name
        cp.after_passes()
        releases = cp.api("GET", "/apps/keep/releases").json()["releases"]
        assert [r["status"] for r in releases] == ["failed", "live"], name
        assert cp.api("GET", "/apps/keep").json()["state"] == "serving", name


def test_a_restart_keeps_the_last_good_release_local(local_cp, tmp_path):
    keeps_last_good_release(local_cp, tmp_path)


@pytest.mark.docker
def test_a_restart_keeps_the_last_good_release_docker(docker_cp, tmp_path):
    keeps_last_good_release(docker_cp, tmp_path)


def test_a_release_pending_when_the_control_plane_is_killed_is_not_revived(local_cp, tmp_path):
    cp = local_cp
    repo = stdlib_app(tmp_path / "pending", "good")
    url = cp.create(stdlib_manifest("pending", timeout=60))["url"]
    cp.push(repo, "pending")
    server = repo / "server.py"
    server.write_text(server.read_text().replace("import os\n", "import os\nimport time\n\ntime.sleep(30)\n", 1))
    git("commit", "-q", "-am", "slow", cwd=repo)
    cp.push(repo, "pending", options=("nowait",))
    wait_for(lambda: cp.api("GET", "/apps/pending").json()["state"] == "deploying", 20, what="v2 deploying")
    cp.stop(signal.SIGKILL, group=True)
    cp.start()
    wait_for(lambda: get_text(url) == "good", 60, 0.1, "v1 served after the restart")
    v2 = cp.api("GET", "/apps/pending/releases").json()["releases"][0]
    assert (v2["number"], v2["status"]) == (2, "cancelled")
    assert v2["reason"] == "the control plane stopped before it served"
    cp.after_passes()
    assert get_text(url) == "good" and serving(cp, "pending")["number"] == 1


def test_a_failed_release_whose_revision_serves_later_stays_failed(local_cp, tmp_path):
    """The reconciler never makes a failed release live, even when a pod serves its revision.
    That takes a pod that fetched the revision after it failed: as from the deploy ref left
    on it by a control plane before this one (issue 24's failed release live after a
    restart), here moved there by hand — the one fake of the test, for a state this version
    no longer makes. The revision fails at first and works once a file exists (a flaky
    dependency), so the pod serves it when it builds it again."""
    cp = local_cp
    repo = stdlib_app(tmp_path / "flaky", "good")
    url = cp.create(stdlib_manifest("flaky"))["url"]
    cp.push(repo, "flaky")
    good = head_of(repo)
    flag = cp.data_dir / "flaky-flag"  # where the app's own uid can look (it passes through the data directory)
    server = repo / "server.py"
    server.write_text(server.read_text().replace(
        "\nclass Handler", f"\nif not os.path.exists({str(flag)!r}):\n    raise RuntimeError('flaky')\n\n\nclass Handler", 1))
    git("commit", "-q", "-am", "flaky", cwd=repo)
    flaky = head_of(repo)
    assert cp.push(repo, "flaky", check=False).returncode != 0
    statuses = lambda: [r["status"] for r in cp.api("GET", "/apps/flaky/releases").json()["releases"]]  # noqa: E731
    assert statuses() == ["failed", "live"]

    def sync(revision: str) -> None:
        """git-sync told by its signal to sync, until its link points at ``revision``."""
        git_sync = next(c for c in cp.api("GET", "/apps/flaky").json()["containers"] if c["name"] == "git-sync")
        os.kill(int(git_sync["id"]), signal.SIGHUP)
        link = cp.data_dir / "pods" / "flaky" / "workspace" / "git" / "current"
        wait_for(lambda: os.readlink(link).endswith(revision), 30, 0.1, f"git-sync on {revision[:12]}")

    bare = cp.data_dir / "repos" / "flaky.git"
    sync(good)  # the deploy ref went back to v1
    flag.touch()
    git("update-ref", "refs/paas/deploy", flaky, cwd=bare)
    sync(flaky)
    logs = lambda: cp.api("GET", "/apps/flaky/logs", params={"tail": 500}).text  # noqa: E731
    wait_for(lambda: f"healthy: traffic switched to {flaky[:12]}" in logs(), 60, 0.2, "the pod serving v2's revision")
    cp.after_passes()
    assert statuses() == ["failed", "live"]
    events = [e["message"] for e in cp.api("GET", "/apps/flaky").json()["events"]]
    assert f"the pod serves {flaky[:12]}, the revision of v2, which failed: it stays failed, and the pod is " \
           "pointed back at what serves" in events
    assert git("rev-parse", "refs/paas/deploy", cwd=bare).stdout.strip() == good
    wait_for(lambda: get_text(url) == "good", 60, 0.1, "v1 served again")
    cp.stop(signal.SIGKILL, group=True)
    cp.start()
    wait_for(lambda: get_text(url) == "good", 60, 0.1, "v1 served after the restart")
    cp.after_passes()
    assert statuses() == ["failed", "live"]


@pytest.mark.docker
def test_delete_after_a_restart_leaves_nothing_on_docker(docker_cp, tmp_path):
    cp = docker_cp
    repo = stdlib_app(tmp_path / "gone", "one")
    cp.create(stdlib_manifest("gone"))
    cp.push(repo, "gone")
    set_text(repo, "two")
    cp.push(repo, "gone")
    client = docker.from_env()
    for _, sig, group in STOPS:
        cp.stop(sig, group=group)
        cp.start()
    assert cp.api("DELETE", "/apps/gone").status_code == 200
    cp.after_passes(5)  # nothing comes back over several passes
    names = {"name": "paas-gone-"}
    assert client.containers.list(all=True, filters=names) == []
    assert client.volumes.list(filters={"name": "paas-gone-"}) == []
    assert client.networks.list(filters={"name": "paas-gone-"}) == []


def up(cp: ControlPlane, port: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "paas.cli", "up", "--port", str(port)],
        env=cp.env, capture_output=True, text=True, timeout=30,
    )


def test_a_second_control_plane_on_the_same_data_dir_changes_nothing(local_cp, tmp_path):
    cp = local_cp
    repo = stdlib_app(tmp_path / "held", "one")
    url = cp.create(stdlib_manifest("held"))["url"]
    cp.push(repo, "held")
    config = cp.env["PAAS_CONFIG"]
    before = (open(config).read(), os.stat(config).st_mtime_ns)
    pods = sorted(processes_under(cp.data_dir / "pods"))

    started = time.monotonic()
    second = up(cp, cp.port + 1 if cp.port < 65535 else cp.port - 1)
    assert time.monotonic() - started < 10
    assert second.returncode == 1
    assert second.stderr == (
        f"error: another control plane (pid {cp.proc.pid}, {cp.url}) is running on the data directory "
        f"{cp.data_dir.resolve()}; stop it first or pass another --data-dir\n"
    )
    assert (open(config).read(), os.stat(config).st_mtime_ns) == before
    assert sorted(processes_under(cp.data_dir / "pods")) == pods
    assert get_text(url) == "one" and cp.api("GET", "/apps/held").json()["state"] == "serving"


def test_a_killed_control_plane_leaves_no_stale_lock(local_cp, tmp_path):
    cp = local_cp
    cp.stop(signal.SIGKILL, group=True)
    assert (cp.data_dir / "control-plane.lock").exists()
    cp.start()  # would time out if the lock still blocked it
    assert cp.api("GET", "/apps").status_code == 200
