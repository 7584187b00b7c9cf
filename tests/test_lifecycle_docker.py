"""Changing an app after it was created, on the real Docker engine: config reaches the app
without a new pod (and never shows in `docker inspect`), the config sidecar rewrites the
files in the pod's volume and signals the app in its PID namespace, a volume outlives the
containers and goes with the app."""

from __future__ import annotations

import json

import docker
import pytest

from helpers import reloading_app, seen, stdlib_manifest, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def client():
    c = docker.from_env()
    yield c
    c.close()


def containers(client, app: str) -> dict:
    found = client.containers.list(all=True, filters={"label": f"paas.app={app}"})
    return {c.labels["paas.container"]: c for c in found}


def deploy(cp, tmp_path, name: str, extra: str = "") -> str:
    repo = reloading_app(tmp_path / name)
    url = cp.create(stdlib_manifest(name) + extra)["url"]
    cp.push(repo, name)
    return url


def test_config_reaches_the_app_without_a_new_pod_and_never_shows_in_docker_inspect(docker_control_plane, client, tmp_path):
    cp = docker_control_plane
    url = deploy(cp, tmp_path, "conf-docker")
    pod = {name: c.id for name, c in containers(client, "conf-docker").items()}
    done = cp.cli("config", "set", "conf-docker", "GREETING=s3cr3t-value")
    assert done.returncode == 0, done.stderr
    assert seen(url)["env"] == "s3cr3t-value"
    assert {name: c.id for name, c in containers(client, "conf-docker").items()} == pod  # the same containers
    # A new pod (restart --hard) starts with the config too, though its environment lacks it.
    assert cp.cli("restart", "conf-docker", "--hard").returncode == 0
    wait_for(lambda: seen(url).get("env") == "s3cr3t-value", 120, 0.2, "the new pod with its config")
    for c in containers(client, "conf-docker").values():
        assert "s3cr3t-value" not in json.dumps(c.attrs), c.name
    assert cp.api("DELETE", "/apps/conf-docker").status_code == 200


def test_the_config_sidecar_signals_the_app_in_its_pid_namespace(docker_control_plane, client, tmp_path):
    cp = docker_control_plane
    url = deploy(cp, tmp_path, "hup-docker", "sidecars: [config]\nconfig: {reload: signal}\n")
    pod = containers(client, "hup-docker")
    assert set(pod) == {"pod", "git-sync", "runtime", "config"}
    assert pod["config"].attrs["HostConfig"]["PidMode"] == f"container:{pod['pod'].id}"
    before = seen(url)
    assert cp.cli("config", "set", "hup-docker", "GREETING=hup").returncode == 0
    after = wait_for(lambda: (s := seen(url)).get("file") == "hup" and s, 30, 0.1, "config.json reloaded on SIGHUP")
    assert (after["pid"], after["hups"], after["env"]) == (before["pid"], 1, "-")  # same process: no restart
    found = pod["runtime"].exec_run(["cat", "/workspace/config/config.json"]).output.decode()
    assert json.loads(found) == {"GREETING": "hup"}
    assert cp.api("DELETE", "/apps/hup-docker").status_code == 200


def test_a_volume_outlives_the_containers_and_goes_with_the_app(docker_control_plane, client, tmp_path):
    cp = docker_control_plane
    url = deploy(cp, tmp_path, "vol-docker", "volumes: {data: /srv/data, notes: notes}\n")
    assert seen(url)["volume"] == "/srv/data"
    runtime = containers(client, "vol-docker")["runtime"]
    for where in ("/srv/data", "$PAAS_VOLUME_NOTES"):  # the app's user may write either
        written = runtime.exec_run(["sh", "-c", f"echo kept > {where}/note"])
        assert written.exit_code == 0, written.output
    assert cp.cli("restart", "vol-docker", "--hard").returncode == 0
    wait_for(lambda: seen(url).get("text") == "one", 120, 0.2, "the new pod serving")
    again = containers(client, "vol-docker")["runtime"]
    assert again.id != runtime.id
    assert again.exec_run(["sh", "-c", "cat /srv/data/note $PAAS_VOLUME_NOTES/note"]).output == b"kept\nkept\n"
    label = {"label": "paas.app=vol-docker"}
    assert {"paas-vol-docker-vol-data", "paas-vol-docker-vol-notes"} <= {v.name for v in client.volumes.list(filters=label)}
    assert cp.api("DELETE", "/apps/vol-docker").status_code == 200
    assert client.volumes.list(filters=label) == []
