"""The pod spec: what to run for an app, backend-neutral.

Built from a stored app (its validated manifest); backends realise it and never read the
manifest. Paths in the env are inside the pod's shared volume, mounted at ``WORKSPACE``;
a backend without mounts (local) maps that prefix onto a directory of its own.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from paas import __version__
from paas.repos import DEPLOY_REF
from paas.store import App

WORKSPACE = "/workspace"
SYNC_PORT = 8079  # git-sync's HTTP port inside the pod (backends that share a host remap it)
LINK = f"{WORKSPACE}/git/current"
GIT_SYNC, RUNTIME = "git-sync", "runtime"
# A hosted repo is synced at once on every push; the poll is only a safety net.
HOSTED_POLL_SECONDS = 30


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    command: tuple[str, ...]  # the image's entrypoint; also a console script of this package
    env: dict[str, str]


@dataclass(frozen=True)
class Resources:
    memory: str | None = None  # docker's syntax: 256m, 1g
    cpus: float | None = None


@dataclass(frozen=True)
class PodSpec:
    app: str
    port: int  # the app's public port on the host
    containers: tuple[Container, ...]
    labels: dict[str, str] = field(default_factory=dict)
    resources: Resources | None = None  # limits of the runtime container, where a backend can

    @property
    def digest(self) -> str:
        """Changes whenever anything a backend realises changes, so a pod can be compared."""
        body = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(body).hexdigest()[:16]

    def container(self, name: str) -> Container:
        return next(c for c in self.containers if c.name == name)


def build(app: App, control_plane_url: str) -> PodSpec:
    """The pod for ``app``; ``control_plane_url`` is how the pod reaches the git server."""
    m = app.manifest
    sync_env = {
        "GITSYNC_ROOT": f"{WORKSPACE}/git",
        "GITSYNC_LINK": "current",
        "GITSYNC_REF": m.source.ref,
        "GITSYNC_DEPTH": "1",
        "GITSYNC_MAX_FAILURES": "-1",
        "GITSYNC_HTTP_BIND": f"0.0.0.0:{SYNC_PORT}",
        # The runtime drains the old version from its worktree after a switch: keep it a while.
        "GITSYNC_STALE_WORKTREE_TIMEOUT": "60s",
    }
    if m.hosted:
        sync_env |= {
            "GITSYNC_REF": DEPLOY_REF,
            "GITSYNC_REPO": f"{control_plane_url.rstrip('/')}/git/{app.name}.git",
            "GITSYNC_PERIOD": f"{HOSTED_POLL_SECONDS}s",
            "GITSYNC_USERNAME": "paas",
            "GITSYNC_PASSWORD": app.deploy_token,
        }
    else:
        sync_env |= {"GITSYNC_REPO": m.source.repo or "", "GITSYNC_PERIOD": f"{m.source.period:g}s"}
    runtime_env = dict(m.env) | {
        "PORT": str(app.port),
        "PAAS_APP_DIR": LINK,
        "PAAS_RUN": m.run or "",
        "PAAS_RUNTIME": m.runtime or "",
        "PAAS_HEALTHCHECK": m.healthcheck.path,
        "PAAS_HEALTH_TIMEOUT": str(m.healthcheck.timeout),
        "PAAS_CACHE_DIR": f"{WORKSPACE}/cache",
        "PAAS_STATE_FILE": f"{WORKSPACE}/runtime.json",
    }
    # The node image is a superset (python, node, static): it serves apps whose runtime is detected.
    runtime = m.runtime or "node"
    return PodSpec(
        app=app.name,
        port=app.port,
        containers=(
            Container(GIT_SYNC, f"paas-git-sync:{__version__}", ("git-sync",), sync_env),
            Container(RUNTIME, f"paas-runtime-{runtime}:{__version__}", ("paas-runtime",), runtime_env),
        ),
        labels={"paas.app": app.name},
        resources=Resources(m.resources.memory, m.resources.cpus) if m.resources else None,
    )
