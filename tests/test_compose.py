"""The control plane in a container, as docker-compose.yml runs it against this machine's
Docker: up, create an app, push to it, the app served at its own port and through the
router in the container; then the container made anew (an upgrade), which adopts the pod
and still routes to it. The compose project (container, network, volume) and every pod
object go with the test."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from helpers import ROOT, ControlPlane, free_port, get_text, set_text, stdlib_app, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]
COMPOSE_FILE = ROOT / "docker-compose.yml"
APP = "composed"


def compose_tool() -> list[str]:
    """`docker compose` (the plugin) or `docker-compose` (Debian's); skipped, or failed under
    PAAS_REQUIRE_DOCKER=1, when neither is installed."""
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True)
    if plugin.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    problem = "neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)"
    if os.environ.get("PAAS_REQUIRE_DOCKER") == "1":
        pytest.fail(f"PAAS_REQUIRE_DOCKER=1 but {problem}", pytrace=False)
    pytest.skip(f"{problem}; set PAAS_REQUIRE_DOCKER=1 to fail instead")


@pytest.fixture(scope="module")
def control_plane_image(pod_images) -> None:
    """paas-control-plane:<version>, built by `paas images build` (here if missing or stale)."""
    from paas.backends.docker import images

    client = images.connect()
    image = tuple(i for i in images.IMAGES if i.name == "control-plane")
    if images.missing(client, image) or images.stale(client, image):
        images.build(client, image)


class Compose:
    """The compose project of docker-compose.yml, on free host ports, as a project of its own:
    its own container name, and a network name that sorts as the file's does."""

    def __init__(self, base: Path) -> None:
        self.cp = ControlPlane(base / "data", base / "cli-config", token=secrets.token_hex(16), backend="docker")
        self.project = f"paastest{secrets.token_hex(4)}"
        service: dict = {"services": {"paas": {"container_name": self.project}}}
        named = (yaml.safe_load(COMPOSE_FILE.read_text()).get("networks") or {}).get("default", {}).get("name")
        if named:
            service["networks"] = {"default": {"name": f"{named}--{self.project}"}}
        override = base / "override.yml"
        override.write_text(yaml.safe_dump(service))
        self.command = [*compose_tool(), "-p", self.project, "-f", str(COMPOSE_FILE), "-f", str(override)]
        self.env = os.environ | {"PAAS_PORT": str(self.cp.port), "PAAS_ROUTER_PORT": str(self.cp.router_port),
                                 "PAAS_ROUTER_TLS_PORT": str(self.cp.router_tls_port), "PAAS_TOKEN": self.cp.token}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([*self.command, *args], env=self.env, cwd=ROOT, capture_output=True, text=True,
                                timeout=120)
        assert not check or result.returncode == 0, f"{' '.join(args)} failed: {result.stderr[-2000:]}"
        return result

    def up(self, *args: str) -> None:
        self.run("up", "-d", "--no-build", *args)
        wait_for(lambda: requests.get(f"{self.cp.url}/api/v1/healthz", timeout=1).ok, 60, 0.2, "the control plane's container")


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory, control_plane_image) -> Iterator[Compose]:
    """docker-compose.yml up; afterwards its apps deleted, the project down with its volume,
    and whatever its control plane made removed by label."""
    import docker

    base = tmp_path_factory.mktemp("compose")
    project = Compose(base)
    client = docker.from_env()
    instance = None
    try:
        project.up()
        instance = client.containers.get(project.project).exec_run(["cat", "/data/instance"]).output.decode().strip()
        yield project
    finally:
        try:
            for app in project.cp.api("GET", "/apps").json()["apps"]:
                project.cp.api("DELETE", f"/apps/{app['name']}")
        except requests.RequestException:
            pass  # not up: what it made is removed by its labels below
        logs = project.run("logs", "--no-color", check=False)
        (base / "compose.log").write_text(logs.stdout + logs.stderr)
        project.run("down", "-v")
        if instance:
            owner = {"label": f"paas.instance={instance}"}
            for c in client.containers.list(all=True, filters=owner):
                c.remove(force=True)
            for n in client.networks.list(filters=owner):
                n.remove()
            for volume in client.volumes.list(filters=owner):
                volume.remove(force=True)


def through_router(cp: ControlPlane) -> str | None:
    try:
        answer = requests.get(f"http://127.0.0.1:{cp.router_port}/", headers={"Host": f"{APP}.localhost"}, timeout=2)
    except requests.RequestException:
        return None
    return answer.text if answer.status_code == 200 else None


def test_a_pushed_app_is_served_at_its_port_and_through_the_router_before_and_after_an_upgrade(compose, tmp_path):
    cp = compose.cp
    port = free_port()
    cp.create(f"name: {APP}\nruntime: python\nrun: python server.py\nport: {port}\n")
    repo = stdlib_app(tmp_path / "repo", "from a container")
    pushed = cp.push(repo, APP)  # fails if the control plane's published ports move meanwhile
    assert "paas: v1 live at " in pushed.stderr
    assert get_text(f"http://127.0.0.1:{port}/") == "from a container"
    assert wait_for(lambda: through_router(cp), 20, what="the app through the router") == "from a container"

    # A new container (a new image, or `docker-compose up` with changed settings) adopts the
    # pod and reaches it again: its router, and its pushes to the pod's git-sync.
    compose.up("--force-recreate")
    assert wait_for(lambda: through_router(cp), 20, what="the app through the new router") == "from a container"
    set_text(repo, "upgraded")
    cp.push(repo, APP)
    assert through_router(cp) == "upgraded" and get_text(f"http://127.0.0.1:{port}/") == "upgraded"

    # Leaving the pod's network on delete leaves the control plane's own ports where they are.
    assert cp.api("DELETE", f"/apps/{APP}").status_code == 200
    assert cp.api("GET", "/apps").json()["apps"] == []
