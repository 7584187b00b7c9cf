from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitsync_harness import git_daemon, git_server, remote, start_sidecar, upstream  # noqa: F401 - fixtures
from helpers import APPS_ROOT, ControlPlane, docker_control_plane_in, processes_under, wait_for
from kube_harness import kube_cluster, kube_control_plane, kubernetes_problem  # noqa: F401 - fixtures
from paas.server import create_app

TOKEN = "test-token-123"
# `paas up` starts a router on 8080 and 8443 by default: the suite's control planes pick free
# ports instead (helpers.ControlPlane), and any other `paas up` a test runs has none.
os.environ.setdefault("PAAS_ROUTER_PORT", "0")
os.environ.setdefault("PAAS_ROUTER_TLS_PORT", "0")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The control planes' data directories (helpers.passable) go with the run."""
    shutil.rmtree(APPS_ROOT, ignore_errors=True)


@pytest.fixture
def app(tmp_path: Path):
    """The control plane in-process (no reconciler: nothing is started)."""
    flask_app = create_app({"data_dir": tmp_path / "data", "token": TOKEN}, start=False)
    yield flask_app
    flask_app.extensions["paas"].close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="session")
def deps_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dependency cache (venvs, node_modules) for every local control plane of the run."""
    return tmp_path_factory.mktemp("deps-cache")


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory, deps_cache: Path) -> Iterator[ControlPlane]:
    """A real `paas up` (gunicorn, local backend) shared by a module's tests."""
    base = tmp_path_factory.mktemp("cp")
    cp = ControlPlane(base / "data", base / "cli-config", cache=deps_cache).start()
    yield cp
    cp.stop()
    assert cp.proc.returncode == 0, cp.log.read_text()[-3000:]
    wait_for(lambda: not processes_under(cp.data_dir / "pods"), 10, what="no pod process left")


def _docker_problem() -> str | None:
    """Why the docker tests can't run here, or None when they can."""
    try:
        import docker

        docker.from_env(timeout=5).ping()
    except Exception as e:  # any failure to reach the engine means: no docker here
        return f"no Docker engine reachable ({type(e).__name__})"
    return None


CHROMIUM = "/usr/bin/chromium"


def _browser_problem() -> str | None:
    """Why the browser tests can't run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


def _node_problem() -> str | None:
    """Why the tests that run Node.js apps on this machine can't run here, or None when they can."""
    absent = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    return f"no {' and no '.join(absent)} on PATH (apt-get install nodejs npm)" if absent else None


# marker -> (why it can't run here, the variable that makes that a failure instead of a skip)
NEEDS = {
    "docker": (_docker_problem, "PAAS_REQUIRE_DOCKER"),
    "browser": (_browser_problem, "PAAS_REQUIRE_BROWSER"),
    "kubernetes": (kubernetes_problem, "PAAS_REQUIRE_KUBERNETES"),
    "node": (_node_problem, "PAAS_REQUIRE_NODE"),
}


MISSING = pytest.StashKey[str]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of a marker in NEEDS skip where their service is missing, unless its variable is 1
    (CI sets them all) and makes that a failure."""
    for name, (find_problem, required) in NEEDS.items():
        marked = [item for item in items if name in item.keywords]
        problem = find_problem() if marked else None
        if problem is None:
            continue
        for item in marked:
            if os.environ.get(required) == "1":
                item.stash[MISSING] = f"{required}=1 but {problem}"
            else:
                item.add_marker(pytest.mark.skip(reason=f"{problem}; set {required}=1 to fail instead"))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test whose required service is missing fails before any of its fixtures (a module's
    control plane, a browser) is set up."""
    if MISSING in item.stash:
        pytest.fail(item.stash[MISSING], pytrace=False)


@pytest.fixture(scope="session")
def pod_images() -> None:
    """The pod images, built once per run if missing (the offline base too, where needed)."""
    from paas.backends.docker import images

    client = images.connect()
    if images.missing(client) or images.stale(client):
        images.build(client, images.POD_IMAGES)


@pytest.fixture(scope="module")
def docker_control_plane(tmp_path_factory: pytest.TempPathFactory, pod_images) -> Iterator[ControlPlane]:
    """A real `paas up --backend docker` shared by a module's tests."""
    with docker_control_plane_in(tmp_path_factory.mktemp("dcp")) as cp:
        yield cp
