from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import ControlPlane, processes_under, wait_for
from paas.server import create_app

TOKEN = "test-token-123"


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


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A real `paas up` (gunicorn, local backend) shared by a module's tests."""
    base = tmp_path_factory.mktemp("cp")
    cp = ControlPlane(base / "data", base / "cli-config").start()
    yield cp
    cp.stop()
    assert cp.proc.returncode == 0, cp.log.read_text()[-3000:]
    wait_for(lambda: not processes_under(cp.data_dir / "pods"), 10, what="no pod process left")
