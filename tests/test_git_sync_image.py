"""The git-sync image, run with `docker run` as upstream's README runs its own.

The repository is served from the host (bound on all interfaces for these tests
only) and reached from the container as host.docker.internal; every container
started here is removed.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gitserver import GitServer, LocalRepos, Upstream

pytestmark = [pytest.mark.docker, pytest.mark.slow]

USERNAME, PASSWORD = "deployer", "pw-in-a-container"
DockerRun = Callable[..., tuple[str, int, str]]  # (container name, exit code, logs)


@pytest.fixture
def image(pod_images: None) -> str:
    from paas.backends.docker.images import IMAGES

    return next(i.tag for i in IMAGES if i.name == "git-sync")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[GitServer, Upstream]]:
    (tmp_path / "served").mkdir()
    with GitServer(tmp_path / "served", USERNAME, PASSWORD, host="0.0.0.0") as server:
        yield server, Upstream(server, "site", tmp_path / "work")


@pytest.fixture
def docker_run() -> Iterator[DockerRun]:
    """`docker run` (detached) a named container; every one is removed afterwards."""
    names: list[str] = []

    def run(*args: str, timeout: float = 60) -> tuple[str, int, str]:
        name = f"paas-test-git-sync-{uuid.uuid4().hex[:8]}"
        names.append(name)
        subprocess.run(["docker", "run", "--detach", "--name", name,
                        "--add-host", "host.docker.internal:host-gateway", *args],
                       check=True, capture_output=True, timeout=60)
        code = subprocess.run(["docker", "wait", name], check=True, capture_output=True,
                              text=True, timeout=timeout).stdout.strip()
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True,
                              timeout=30)
        return name, int(code), logs.stdout + logs.stderr

    yield run
    for name in names:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, timeout=60)


def test_one_time_sync_into_a_volume_as_user_65533(
    image: str, served: tuple[GitServer, Upstream], docker_run: DockerRun, tmp_path: Path
) -> None:
    server, upstream = served
    commit = upstream.commit("hello from the host")
    volume = tmp_path / "git-data"
    volume.mkdir()
    volume.chmod(0o777)  # the container's uid must be able to write there

    _, code, logs = docker_run(
        "-v", f"{volume}:/git", "-e", f"GITSYNC_PASSWORD={PASSWORD}", image,
        f"--repo=http://host.docker.internal:{server.port}/site.git",
        f"--username={USERNAME}", "--root=/git", "--one-time",
    )

    assert code == 0, logs
    link = volume / "site.git"  # upstream's default --link: the last element of --repo
    assert os.readlink(link) == f".worktrees/{commit}"
    assert (link / "index.html").read_text() == "hello from the host"
    assert {(link / "index.html").stat().st_uid, (volume / ".git").stat().st_uid} == {65533}
    assert PASSWORD not in logs


def test_add_user_records_an_arbitrary_uid(
    image: str, served: tuple[GitServer, Upstream], docker_run: DockerRun, tmp_path: Path
) -> None:
    server, upstream = served
    commit = upstream.commit("v1")

    name, code, logs = docker_run(
        "--user", "4242:4242", "-e", f"GITSYNC_PASSWORD={PASSWORD}", image,
        f"--repo=http://host.docker.internal:{server.port}/site.git", f"--username={USERNAME}",
        "--root=/tmp/git", "--ref=main", "--add-user", "--one-time",
    )

    assert code == 0, logs
    assert f"synced main -> {commit}" in logs
    archive = subprocess.run(["docker", "cp", f"{name}:/etc/passwd", "-"], check=True,
                             capture_output=True, timeout=30).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        passwd = tar.extractfile("passwd").read().decode()
    assert "git-sync:x:4242:4242::/tmp:/sbin/nologin" in passwd.splitlines()


@pytest.mark.parametrize("form", ["path", "file://"])
def test_a_repository_on_a_shared_volume_owned_by_another_uid(
    form: str, image: str, docker_run: DockerRun, tmp_path: Path
) -> None:
    """The repository is root's (the host wrote it); the image runs as 65533 and another --user."""
    shared = Upstream(LocalRepos(tmp_path / "shared"), "app", tmp_path / "work")
    commit = shared.commit("from a shared volume")
    volume = tmp_path / "git-data"
    volume.mkdir()
    volume.chmod(0o777)
    (tmp_path / "shared").chmod(0o755)
    repo = "/shared/app.git" if form == "path" else "file:///shared/app.git"
    for uid in ("65533", "4242"):
        _, code, logs = docker_run(
            "--user", f"{uid}:{uid}", "-v", f"{tmp_path / 'shared'}:/shared:ro", "-v", f"{volume}:/git",
            image, f"--repo={repo}", f"--root=/git/{uid}", "--link=app", "--one-time",
        )
        assert code == 0, logs
        assert "dubious ownership" not in logs
        assert os.readlink(volume / uid / "app") == f".worktrees/{commit}"
