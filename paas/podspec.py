"""The pod spec: what to run for an app, backend-neutral.

Built from a stored app (its validated manifest); backends realise it and never read the
manifest. Paths in the env are inside the pod's shared volume, mounted at ``WORKSPACE``,
or in its secret files, mounted read-only at ``SECRETS_DIR`` in the containers that ask;
a backend without mounts (local) maps those prefixes onto directories of its own.

Ports are declared, not written into the env: a container names the variable through
which it is told the ``HOST:PORT`` to bind (``bind_env``), and each backend fills it in
as it realises the port — in a pod of its own network namespace every port is bound on
all addresses at its number; on a shared host network (the local backend) a published
port is bound on the address apps listen on and an internal one is remapped to a free
loopback port.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from paas import __version__
from paas.repos import DEPLOY_REF
from paas.store import App

WORKSPACE = "/workspace"
SECRETS_DIR = "/etc/paas/secrets"
SYNC_PORT = 8079  # git-sync's HTTP port inside the pod
LINK = f"{WORKSPACE}/git/current"
SYNC_ERROR_FILE = f"{WORKSPACE}/git/.sync-error"
STATE_FILE = f"{WORKSPACE}/runtime.json"
GIT_SYNC, RUNTIME = "git-sync", "runtime"
# Roles: what a container is to the pod (backends treat every container alike; the
# control plane asks for the sync container's port and the runtime's state by role).
SYNC, APP, SIDECAR = "sync", "runtime", "sidecar"
PASSWORD_FILE = "git-password"
# A hosted repo is synced at once on every push; the poll is only a safety net.
HOSTED_POLL_SECONDS = 30


@dataclass(frozen=True)
class Port:
    name: str
    number: int  # the port inside the pod's network namespace
    publish: bool = False  # reachable from outside the pod, at the same number
    bind_env: str | None = None  # the variable that tells the container HOST:PORT to bind


@dataclass(frozen=True)
class Resources:
    memory: str | None = None  # docker's syntax: 256m, 1g
    cpus: float | None = None


@dataclass(frozen=True)
class Container:
    name: str
    role: str
    image: str
    command: tuple[str, ...]  # the image's entrypoint; also a console script of this package
    env: dict[str, str]
    ports: tuple[Port, ...] = ()
    secrets: bool = False  # mounts the pod's secret files (read-only) at SECRETS_DIR
    resources: Resources | None = None  # limits, where a backend can
    # What the container reports as JSON files: name -> path; a backend reads them into
    # PodStatus.reports (the runtime's state, git-sync's last error).
    reports: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PodSpec:
    app: str
    containers: tuple[Container, ...]
    labels: dict[str, str] = field(default_factory=dict)
    # File name -> content: credentials handed to containers as files, never as env.
    secrets: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def digest(self) -> str:
        """Changes whenever anything a backend realises changes, so a pod can be compared."""
        body = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(body).hexdigest()[:16]

    def role(self, role: str) -> Container | None:
        return next((c for c in self.containers if c.role == role), None)

    @property
    def published(self) -> list[Port]:
        return [p for c in self.containers for p in c.ports if p.publish]


def build(app: App, control_plane_url: str) -> PodSpec:
    """The pod for ``app``; ``control_plane_url`` is how the pod reaches the git server."""
    m = app.manifest
    sync_env = {
        "GITSYNC_ROOT": f"{WORKSPACE}/git",
        "GITSYNC_LINK": "current",
        "GITSYNC_REF": m.source.ref,
        "GITSYNC_DEPTH": "1",
        "GITSYNC_MAX_FAILURES": "-1",
        "GITSYNC_ERROR_FILE": SYNC_ERROR_FILE,
        # Upstream's default is a full gc after every change; between quick pushes `auto` is enough.
        "GITSYNC_GIT_GC": "auto",
        # The runtime drains the old version from its worktree after a switch: keep it a while.
        "GITSYNC_STALE_WORKTREE_TIMEOUT": "60s",
    }
    secrets: dict[str, str] = {}
    if m.hosted:
        sync_env |= {
            "GITSYNC_REF": DEPLOY_REF,
            "GITSYNC_REPO": f"{control_plane_url.rstrip('/')}/git/{app.name}.git",
            "GITSYNC_PERIOD": f"{HOSTED_POLL_SECONDS}s",
            "GITSYNC_USERNAME": "paas",
        }
        secrets[PASSWORD_FILE] = app.deploy_token
    else:
        sync_env |= {"GITSYNC_REPO": m.source.clone_url or "", "GITSYNC_PERIOD": f"{m.source.period:g}s"}
        if m.source.username:
            sync_env["GITSYNC_USERNAME"] = m.source.username
        if app.git_password:
            secrets[PASSWORD_FILE] = app.git_password
    if secrets:
        sync_env["GITSYNC_PASSWORD_FILE"] = f"{SECRETS_DIR}/{PASSWORD_FILE}"
    runtime_env = dict(m.env) | {
        "PORT": str(app.port),
        "PAAS_APP_DIR": LINK,
        "PAAS_RUN": m.run or "",
        "PAAS_RUNTIME": m.runtime or "",
        "PAAS_HEALTHCHECK": m.healthcheck.path,
        "PAAS_HEALTH_TIMEOUT": str(m.healthcheck.timeout),
        "PAAS_CACHE_DIR": f"{WORKSPACE}/cache",
        "PAAS_STATE_FILE": STATE_FILE,
    }
    # The node image is a superset (python, node, static): it serves apps whose runtime is detected.
    runtime = m.runtime or "node"
    resources = Resources(m.resources.memory, m.resources.cpus) if m.resources else None
    return PodSpec(
        app=app.name,
        containers=(
            Container(
                GIT_SYNC,
                SYNC,
                f"paas-git-sync:{__version__}",
                ("git-sync",),
                sync_env,
                ports=(Port("http", SYNC_PORT, bind_env="GITSYNC_HTTP_BIND"),),
                secrets=bool(secrets),
                reports={"sync_error": SYNC_ERROR_FILE},
            ),
            Container(
                RUNTIME,
                APP,
                f"paas-runtime-{runtime}:{__version__}",
                ("paas-runtime",),
                runtime_env,
                ports=(Port("http", app.port, publish=True, bind_env="PAAS_BIND"),),
                resources=resources,
                reports={"runtime": STATE_FILE},
            ),
        ),
        labels={"paas.app": app.name},
        secrets=secrets,
    )
