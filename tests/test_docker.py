"""Pods on the real Docker engine: shared namespaces and volume, self-healing, adoption, cleanup."""

from __future__ import annotations

import os
import signal
import threading

import docker
import psutil
import pytest
import requests

from helpers import SAMPLES, commit_change, get_text, sample_repo, stdlib_app, stdlib_manifest, wait_for
from paas.backends.docker import images

pytestmark = [pytest.mark.docker, pytest.mark.slow]
APP = "hello-docker"


@pytest.fixture(scope="module")
def client():
    c = docker.from_env()
    yield c
    c.close()


@pytest.fixture(scope="module")
def deployed(docker_control_plane, tmp_path_factory):
    cp = docker_control_plane
    repo = sample_repo("hello-flask", tmp_path_factory.mktemp("src") / APP)
    manifest = (SAMPLES / "hello-flask" / "paas.yaml").read_text().replace("name: hello-flask", f"name: {APP}")
    app = cp.create(manifest + "resources: {memory: 256m, cpus: 0.5}\nsidecars: [topz]\n")
    cp.push(repo, APP)
    wait_for(lambda: "Hello from paas!" in (get_text(app["url"]) or ""), 240, 0.2, "first deploy on docker")
    return cp, repo, app["url"]


def containers(client, app: str = APP) -> dict[str, docker.models.containers.Container]:
    found = client.containers.list(all=True, filters={"label": f"paas.app={app}"})
    return {c.labels["paas.container"]: c for c in found}


def test_pod_shares_namespaces_and_volume(deployed, client):
    cp, repo, url = deployed
    pod = containers(client)
    assert set(pod) == {"pod", "git-sync", "runtime", "topz"}
    infra = pod["pod"]
    for name in ("git-sync", "runtime", "topz"):
        host_config = pod[name].attrs["HostConfig"]
        assert host_config["NetworkMode"] == f"container:{infra.id}"
        assert host_config["PidMode"] == f"container:{infra.id}"  # topz asks for one PID namespace
        assert pod[name].name == f"paas-{APP}-{name}"
        assert pod[name].labels["paas.pod"] == APP
    for name in ("git-sync", "runtime"):
        mounts = {m["Destination"]: m["Name"] for m in pod[name].attrs["Mounts"]}
        assert mounts["/workspace"] == f"paas-{APP}-workspace"
    assert {m["Destination"]: m["Name"] for m in pod["runtime"].attrs["Mounts"]}["/workspace/cache"].startswith(
        "paas-cache-")
    assert pod["topz"].attrs["Mounts"] == []  # it needs no volume
    runtime = pod["runtime"].attrs["HostConfig"]
    assert runtime["Memory"] == 256 * 1024 * 1024 and runtime["NanoCpus"] == 500_000_000
    # One PID namespace: the runtime sees git-sync's process.
    ps = pod["runtime"].exec_run(["sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"]).output.decode()
    assert "git-sync" in ps and "paas-runtime" in ps
    # A push is served through the infra container's published port.
    commit_change(repo, "app.py", "from paas!", "from a docker pod!", "edit")
    cp.push(repo, APP)
    wait_for(lambda: "from a docker pod!" in (get_text(url) or ""), 30, 0.1, "the edit served")


def test_topz_lists_the_pods_processes_by_container(deployed):
    cp, _, _ = deployed
    found = cp.api("GET", f"/apps/{APP}/processes").json()["processes"]
    workers = [p for p in found if p["container"] == "runtime" and "gunicorn" in p["command"]]
    assert len(workers) >= 3, found  # the master and its two workers (--workers 2)
    assert {p["container"] for p in found} >= {"pod", "git-sync", "runtime", "topz"}
    assert all(p["rss"] > 0 and p["user"] for p in found if p["container"] == "runtime")
    shown = cp.cli("ps", APP)
    assert shown.returncode == 0 and shown.stdout.splitlines()[0].split()[:3] == ["PID", "PPID", "CONTAINER"]
    assert any(line.split()[2] == "runtime" and "gunicorn" in line for line in shown.stdout.splitlines())


def test_killed_container_comes_back_and_status_shows_it(deployed, client):
    cp, _, url = deployed
    containers(client)["runtime"].kill()
    wait_for(lambda: containers(client)["runtime"].status == "running", 10, 0.2, "runtime recreated within 10 s")
    wait_for(lambda: get_text(url), 60, 0.2, "served again")

    def restarted():  # views read the reconciler's last observation (at most a pass old)
        status = cp.api("GET", f"/apps/{APP}").json()
        runtime = next(c for c in status["containers"] if c["name"] == "runtime")
        return runtime["restarts"] == 1 and status["state"] == "serving" and (status, runtime)

    status, runtime = wait_for(restarted, 10, 0.1, "the restart observed")
    assert runtime["image"] == f"paas-runtime-python:{images.__version__}" and status["revision"]


def test_logs_come_from_the_containers(deployed):
    cp, _, _ = deployed
    text = cp.api("GET", f"/apps/{APP}/logs", params={"tail": 300}).text
    assert "git-sync | " in text and "runtime | " in text and "traffic switched to" in text
    assert cp.token not in text


def test_containers_of_apps_no_longer_stored_are_removed(deployed, client):
    cp, _, _ = deployed
    instance = (cp.data_dir / "instance").read_text().strip()
    stray = client.containers.run(
        images.BASE_IMAGE, ["sleep", "300"], detach=True, name="paas-ghost-runtime",
        labels={"paas.app": "ghost", "paas.instance": instance, "paas.container": "runtime"},
    )
    try:
        wait_for(lambda: not client.containers.list(all=True, filters={"label": "paas.app=ghost"}), 15,
                 what="the stray container removed by the reconciler")
    finally:
        try:
            stray.remove(force=True)
        except docker.errors.NotFound:
            pass


def restart_events(cp) -> list[str]:
    return [e["message"] for e in cp.api("GET", f"/apps/{APP}").json()["events"] if e["kind"] == "restart"]


def test_control_plane_restart_adopts_the_pod(deployed, client):
    cp, _, url = deployed
    before = {name: c.id for name, c in containers(client).items()}
    restarts = restart_events(cp)
    assert len(restarts) == 1  # the kill of the test above
    assert cp.stop() == 0
    assert get_text(url), "pods keep serving while the control plane is down"
    cp.start()
    wait_for(lambda: cp.api("GET", f"/apps/{APP}").json()["state"] == "serving", 30, what="adopted pod running")
    assert {name: c.id for name, c in containers(client).items()} == before
    assert len(client.containers.list(all=True, filters={"label": f"paas.app={APP}"})) == 4
    cp.after_passes()
    assert restart_events(cp) == restarts  # the new control plane knew that restart already


def test_the_router_keeps_routing_while_the_api_restarts(deployed):
    """The API's worker killed outright (gunicorn starts another): the router, its own process,
    routes every request by Host to the pod (which outlives the API on Docker) meanwhile, and
    the API comes back."""
    cp = deployed[0]
    host = f"{APP}.localhost"
    wait_for(lambda: route(cp.router_port, host)[0] == 200, 30, what="the app served by the router")
    children = psutil.Process(cp.proc.pid).children()
    workers = [p for p in children if "paas.router" not in " ".join(p.cmdline())]
    assert workers and len(workers) < len(children)  # the API's worker(s) and the router beside them
    served = route(cp.router_port, host)
    assert served[0] == 200
    answers: list[tuple[int, str] | str] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                answers.append(route(cp.router_port, host))
            except requests.RequestException as e:
                answers.append(repr(e))

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        wait_for(lambda: len(answers) >= 5, 20, what="answers before the restart")
        for worker in workers:
            os.kill(worker.pid, signal.SIGKILL)
        wait_for(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in workers), 20,
                 what="the API worker gone")
        before = len(answers)
        wait_for(lambda: requests.get(f"{cp.url}/api/v1/healthz", timeout=1).ok, 60, what="the API back")
        wait_for(lambda: len(answers) >= before + 5, 20, what="answers after the restart")
    finally:
        stop.set()
        poller.join(20)
    assert set(answers) == {served}, [(i, str(a)[:40]) for i, a in enumerate(answers) if a != served][:3] + [len(answers)]
    assert {p.pid for p in psutil.Process(cp.proc.pid).children()} - {w.pid for w in workers}


def route(port: int, host: str) -> tuple[int, str]:
    answer = requests.get(f"http://127.0.0.1:{port}/", headers={"Host": host}, timeout=10)
    return answer.status_code, answer.text


def test_an_app_whose_pod_cannot_run_does_not_stop_the_others(deployed, tmp_path):
    cp, _, url = deployed
    cp.create("name: tiny-memory\nruntime: static\nresources: {memory: 1k}\n")  # Docker's minimum is 6 MB
    repo = stdlib_app(tmp_path / "neighbour", "neighbour")
    cp.create(stdlib_manifest("neighbour"))
    pushed = cp.push(repo, "neighbour")
    assert "paas: v1 live at" in pushed.stderr and get_text(url)
    cp.after_passes(3)
    errors = [e["message"] for e in cp.api("GET", "/apps/tiny-memory").json()["events"] if e["kind"] == "error"]
    assert len(errors) == 1, errors  # recorded once, not once per pass
    assert errors[0].startswith("docker could not run the pod of tiny-memory: ")
    for name in ("tiny-memory", "neighbour"):
        assert cp.api("DELETE", f"/apps/{name}").status_code == 200


def test_delete_leaves_nothing_behind(deployed, client):
    cp, _, url = deployed
    assert cp.api("DELETE", f"/apps/{APP}").status_code == 200
    label = {"label": f"paas.app={APP}"}
    assert client.containers.list(all=True, filters=label) == []
    assert client.volumes.list(filters=label) == []
    assert client.networks.list(filters=label) == []
    assert get_text(url, timeout=0.5) is None


def test_a_failed_image_build_says_why_and_tags_nothing(client, pod_images, tmp_path):
    (tmp_path / "Dockerfile").write_text(f"FROM {images.BASE_IMAGE}\nRUN echo broken-step && exit 3\n")
    broken = images.Image("broken-test", str(tmp_path), "Dockerfile")
    with pytest.raises(images.ImageBuildFailed) as failure:
        images.build(client, (broken,), offline_base=False, say=lambda _: None)
    assert "building paas-broken-test" in failure.value.message
    assert any("broken-step" in line for line in failure.value.details)
    assert images.missing(client, (broken,)) == [broken]
