"""The runtime images on a real Docker engine: what they document, and what they serve.

A container of each image gets a git-sync-like workspace bind-mounted at
``/workspace/git`` and is driven by swapping its link, as tests/test_runtime.py
does with the supervisor on the host. Every container made here is removed.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from test_runtime import Workspace, try_get

from helpers import SAMPLES, free_port, wait_for

pytestmark = pytest.mark.docker

VERSION = "0.1.0"


@pytest.fixture(scope="module")
def client(pod_images):
    import docker

    return docker.from_env(timeout=120)


@pytest.fixture
def run(client, tmp_path: Path) -> Iterator:
    """Start an image on a fresh workspace: returns (workspace, port, state reader)."""
    containers = []

    def run(image: str) -> tuple[Workspace, int, Callable[[], dict]]:
        workspace = Workspace(tmp_path / "git")
        for path in (workspace.root, workspace.root / ".worktrees"):
            path.chmod(0o777)  # the container runs as 65533
        port, status_port = free_port(), free_port()
        container = client.containers.run(
            f"{image}:{VERSION}",
            detach=True,
            init=True,
            ports={"8080/tcp": ("127.0.0.1", port), "8078/tcp": ("127.0.0.1", status_port)},
            volumes={str(workspace.root): {"bind": "/workspace/git", "mode": "rw"}},
            labels={"paas.test": "runtime-images"},
        )
        containers.append(container)

        def state() -> dict:
            try:
                return requests.get(f"http://127.0.0.1:{status_port}/status", timeout=2).json()
            except (requests.RequestException, ValueError):
                return {}

        return workspace, port, state

    yield run
    for container in containers:
        print(container.logs().decode(errors="replace"))  # shown when the test failed
        container.remove(force=True)


def publish_sample(workspace: Workspace, name: str, **extra: str) -> str:
    files = {p.name: p.read_text() for p in (SAMPLES / name).iterdir() if p.is_file()}
    rev = workspace.write({**files, **extra})
    for path in (workspace.root / ".worktrees" / rev).rglob("*"):
        path.chmod(0o777 if path.is_dir() else 0o666)
    (workspace.root / ".worktrees" / rev).chmod(0o777)
    workspace.publish(rev)
    return rev


def serves(port: int, text: str) -> bool:
    answer = try_get(port)
    return answer is not None and answer[0] == 200 and text in answer[1]


@pytest.mark.parametrize("runtime", ["python", "node", "static"])
def test_images_document_themselves(client, runtime):
    config = client.images.get(f"paas-runtime-{runtime}:{VERSION}").attrs["Config"]
    assert {"8080/tcp", "8078/tcp"} <= set(config["ExposedPorts"])
    assert config["User"] == "65533:65533"
    for label in ("title", "description", "version", "source", "licenses"):
        assert config["Labels"][f"org.opencontainers.image.{label}"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PAAS_RUNTIME"] == {"python": "python", "node": "", "static": "static"}[runtime]
    for name in ("PORT", "PAAS_APP_DIR", "PAAS_RUN", "PAAS_HEALTHCHECK", "PAAS_HEALTH_TIMEOUT",
                 "PAAS_CACHE_DIR", "PAAS_STATUS_BIND"):
        assert name in env
    dockerfile = Path(__file__).resolve().parent.parent / "runtimes" / runtime / "Dockerfile"
    assert dockerfile.read_text().count("\n# ") >= 7  # each ENV has its comment


def test_node_image_detects_and_swaps_node_static_and_python_apps(run):
    workspace, port, state = run("paas-runtime-node")
    node = publish_sample(workspace, "hello-node")
    wait_for(lambda: serves(port, "Hello from paas (node v"), 90, what="the node sample")
    assert wait_for(lambda: state().get("serving") == node and state(), 10, what="state")["runtime"] == "node"

    publish_sample(workspace, "hello-static")
    wait_for(lambda: serves(port, "<h1>Hello from paas!</h1>"), 30, what="the static sample")
    assert state()["runtime"] == "static"

    # A python revision that needs nothing from PyPI: the standard library's file server.
    python = workspace.write(
        {"requirements.txt": "", "index.html": "python here", "Procfile": "web: python -m http.server $PORT\n"}
    )
    for path in (workspace.root / ".worktrees" / python, *(workspace.root / ".worktrees" / python).iterdir()):
        path.chmod(0o777)
    workspace.publish(python)
    wait_for(lambda: serves(port, "python here"), 60, what="the python revision")
    assert wait_for(lambda: state().get("serving") == python and state(), 10, what="state")["runtime"] == "python"


def test_static_image_serves_the_static_sample(run):
    workspace, port, state = run("paas-runtime-static")
    publish_sample(workspace, "hello-static")
    wait_for(lambda: serves(port, "<h1>Hello from paas!</h1>"), 30, what="the static sample")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/style.css")
    response = conn.getresponse()
    assert (response.status, response.getheader("Content-Type")) == (200, "text/css; charset=utf-8")
    conn.close()
    assert try_get(port, "/nope.html")[0] == 404
    assert state()["runtime"] == "static"
