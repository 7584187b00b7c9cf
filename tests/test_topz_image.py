"""The topz image run exactly as the seed's hands-on runs it: an app container, then topz
joined to its PID namespace with `docker run --pid=container:…`, serving on a published port."""

from __future__ import annotations

import subprocess
import uuid

import docker
import pytest
import requests

from helpers import free_port, wait_for
from paas import __version__

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def names(pod_images):
    made: list[str] = []
    yield made
    for name in made:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, timeout=60)


def test_the_seeds_hands_on_lists_the_app_containers_processes(names):
    app, topz = f"paas-test-app-{uuid.uuid4().hex[:8]}", f"paas-test-topz-{uuid.uuid4().hex[:8]}"
    names += [app, topz]
    subprocess.run(["docker", "run", "-d", "--name", app, "--entrypoint", "sleep", f"paas-runtime-python:{__version__}",
                    "1234"], check=True, capture_output=True, timeout=60)
    port = free_port()
    subprocess.run(["docker", "run", "-d", "--name", topz, f"--pid=container:{app}", "-p", f"127.0.0.1:{port}:8080",
                    f"paas-topz:{__version__}", "--addr=0.0.0.0:8080"], check=True, capture_output=True, timeout=60)
    text = wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/topz", timeout=5).text, 30, 0.2, "topz answering")
    lines = text.splitlines()
    assert lines[0].split() == ["PID", "CPU%", "MEM%", "COMMAND"]
    rows = [line.split(None, 3) for line in lines[1:]]
    assert any(row[3] == "sleep 1234" and row[0] == "1" for row in rows), text  # the app's PID 1
    found = requests.get(f"http://127.0.0.1:{port}/topz", params={"format": "json"}, timeout=5).json()["processes"]
    app_id = docker.from_env().containers.get(app).id
    sleep = next(p for p in found if p["command"] == "sleep 1234")
    assert sleep["container"] == app_id[:12] and sleep["ppid"] == 0 and sleep["threads"] == 1
    assert set(sleep) == {"pid", "ppid", "container", "user", "state", "rss", "memory_percent", "cpu_percent",
                          "started", "threads", "command"}
    as_json = requests.get(f"http://127.0.0.1:{port}/topz", headers={"Accept": "application/json"}, timeout=5)
    assert as_json.headers["Content-Type"] == "application/json"


def test_the_image_documents_itself(pod_images):
    config = docker.from_env().images.get(f"paas-topz:{__version__}").attrs["Config"]
    assert "8080/tcp" in config["ExposedPorts"] and config["User"] == "65533:65533"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["TOPZ_ADDR"] == "0.0.0.0:8080" and env["TOPZ_SAMPLE"] == "0.1"
    for label in ("title", "description", "version", "source", "licenses"):
        assert config["Labels"][f"org.opencontainers.image.{label}"]
