"""The pod of an app: its app spec rendered in the pod model (`paas.podmodel`).

Every pod has a sync container (git-sync, or any git-sync given by `PAAS_GIT_SYNC_IMAGE` /
`PAAS_GIT_SYNC_COMMAND`: it is passed only flags and `GITSYNC_*` variables that
kubernetes/git-sync v4 understands) and the runtime; then the sidecars the app asked for
and those the platform adds, each from its declaration in `paas.sidecars`.

Paths are inside the pod: the shared volume is mounted at ``WORKSPACE``, secret files at
``SECRETS_DIR`` in the containers that need them, and the pod's credential (`appspec.credential`)
at ``CREDENTIAL_DIR`` in each container that serves control endpoints: git-sync's `POST /sync`,
the runtime's status endpoint, and each sidecar whose declaration names a ``credential_env``.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace

from paas import __version__
from paas.appspec import AppSpec, Platform
from paas.errors import InvalidInput
from paas.podmodel import (
    APP,
    PERSISTENT,
    SECRET,
    SHARED,
    SIDECAR,
    SYNC,
    Container,
    Mount,
    PodSpec,
    Port,
    Push,
    Readiness,
    Resources,
    Status,
    Volume,
)
from paas.sidecars import CONFIG, CONFIG_DIR, REGISTRY, available

WORKSPACE = "/workspace"
CACHE = f"{WORKSPACE}/cache"
SECRETS_DIR = "/etc/paas/secrets"
LINK = f"{WORKSPACE}/git/current"
SYNC_ERROR_FILE = f"{WORKSPACE}/git/.sync-error"
SYNC_PORT = 8079  # git-sync's HTTP port inside the pod
STATUS_PORT = 8078  # the runtime supervisor's status endpoint inside the pod
GIT_SYNC, RUNTIME = "git-sync", "runtime"
PASSWORD_FILE = "git-password"
# git-sync syncs at once on this signal: how a push reaches a git-sync without POST /sync.
SYNC_SIGNAL = "SIGHUP"
SETTINGS_FILE = f"{WORKSPACE}/.paas-settings.json"
# The pod's credential: a secret volume of its own, mounted read-only where it is wanted.
CREDENTIAL, CREDENTIAL_DIR, CREDENTIAL_FILE = "credential", "/etc/paas/credential", "token"
CREDENTIAL_MOUNT = Mount(CREDENTIAL, CREDENTIAL_DIR, read_only=True)
CREDENTIAL_PATH = f"{CREDENTIAL_DIR}/{CREDENTIAL_FILE}"
# How git-sync is told where it is: a variable upstream's git-sync ignores (not GITSYNC_*).
SYNC_CREDENTIAL_ENV = "PAAS_SYNC_TOKEN_FILE"
STATUS_CREDENTIAL_ENV = "PAAS_STATUS_TOKEN_FILE"
VOLUMES = f"{WORKSPACE}/volumes"  # where a volume linked into the revision is mounted
INNER_PORT = 8080  # the app's port inside its pod when a sidecar (https) stands in front


def build(app: AppSpec, platform: Platform) -> PodSpec:
    """The pod for ``app``; raises InvalidInput for a sidecar no declaration names."""
    workspace = Mount("workspace", WORKSPACE)
    volumes = [Volume("workspace"), Volume("cache", SHARED), Volume(CREDENTIAL, SECRET, {CREDENTIAL_FILE: app.credential})]
    volumes += [Volume(f"vol-{name}", PERSISTENT) for name in sorted(app.volumes)]
    sync_mounts = [workspace, CREDENTIAL_MOUNT]
    if app.source.password:
        volumes.append(Volume("secrets", SECRET, {PASSWORD_FILE: app.source.password}))
        sync_mounts.append(Mount("secrets", SECRETS_DIR, read_only=True))
    kinds = []
    for sidecar in app.sidecars:
        kind = REGISTRY.get(sidecar.name)
        if kind is None:
            raise InvalidInput(f"unknown sidecar {sidecar.name!r}; available: {available()}")
        kinds.append((sidecar, kind))
    # A sidecar in front of the app's port takes its number; the app listens inside the pod.
    front = next((kind for _, kind in kinds if kind.fronts), None)
    containers = [_sync(app, platform, tuple(sync_mounts)), _runtime(app, workspace, fronted=front is not None)]
    share_pid = False
    for sidecar, kind in kinds:
        share_pid = share_pid or kind.share_pid(app)
        ports = kind.ports
        if kind is front:
            ports = (replace(ports[0], number=app.port, publish=True), *ports[1:])
        for volume, files in kind.secrets(app).items():
            volumes.append(Volume(volume, SECRET, files))
        env, mounts = dict(kind.env) | kind.settings(app), kind.mounts
        if kind.credential_env:
            env[kind.credential_env] = CREDENTIAL_PATH
            mounts = (*mounts, CREDENTIAL_MOUNT)
        containers.append(
            Container(
                kind.name,
                SIDECAR,
                kind.image,
                kind.command,
                env,
                ports=ports,
                mounts=mounts,
                readiness=kind.readiness,
                status=kind.status,
                platform=sidecar.from_platform,
                peers=dict(kind.peers),
                pushes=(_config_push(app),) if kind.name == CONFIG else (),
            )
        )
    return PodSpec(
        app=app.name,
        containers=tuple(containers),
        volumes=tuple(volumes),
        share_pid=share_pid,
        labels={"paas.app": app.name},
    )


def _sync(app: AppSpec, platform: Platform, mounts: tuple[Mount, ...]) -> Container:
    env = {
        "GITSYNC_REPO": app.source.repo,
        "GITSYNC_REF": app.source.ref,
        "GITSYNC_PERIOD": f"{app.source.period:g}s",
        "GITSYNC_ROOT": f"{WORKSPACE}/git",
        "GITSYNC_LINK": "current",
        "GITSYNC_DEPTH": "1",
        "GITSYNC_MAX_FAILURES": "-1",
        "GITSYNC_ERROR_FILE": SYNC_ERROR_FILE,
        "GITSYNC_SYNC_ON_SIGNAL": SYNC_SIGNAL,
        # Upstream's default is a full gc after every change; between quick pushes `auto` is enough.
        "GITSYNC_GIT_GC": "auto",
        # The runtime drains the old version from its worktree after a switch: keep it a while.
        "GITSYNC_STALE_WORKTREE_TIMEOUT": "60s",
        SYNC_CREDENTIAL_ENV: CREDENTIAL_PATH,
    }
    if app.source.username:
        env["GITSYNC_USERNAME"] = app.source.username
    if app.source.password:
        env["GITSYNC_PASSWORD_FILE"] = f"{SECRETS_DIR}/{PASSWORD_FILE}"
    return Container(
        GIT_SYNC,
        SYNC,
        platform.git_sync_image or f"paas-git-sync:{__version__}",
        (platform.git_sync_command,),
        env,
        ports=(Port("http", SYNC_PORT, bind_env="GITSYNC_HTTP_BIND"),),
        mounts=mounts,
        readiness=Readiness("http", "/"),
        reports={"sync_error": SYNC_ERROR_FILE},
    )


def settings(app: AppSpec) -> dict:
    """The runtime's live settings (`paas_runtime.live`): what it runs and how, changed
    without a new pod — a change is rolled out as a new instance beside the old one."""
    body = {
        "run": app.run,
        "healthcheck": app.healthcheck_path,
        "health_timeout": float(app.healthcheck_timeout),
        "env": dict(app.env),
        "config": dict(app.config),
        "config_version": app.config_version,
        "config_reload": app.config_reload,
        "generation": app.generation,
    }
    body["version"] = _version(body)
    return body | {"issued": time.time()}


def _without_secrets(live: dict) -> dict:
    """The settings for the runtime's environment, which `docker inspect` and a Kubernetes pod
    show: without the config values (the runtime waits for them to be pushed)."""
    return live | {"config": {}, "withheld": True} if live["config"] else live


def _version(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _config_push(app: AppSpec) -> Push:
    """The config sidecar's document: the variables and how the app takes them."""
    body = {
        "version": app.config_version,
        "vars": dict(app.config),
        "reload": app.config_reload,
        "signal": app.config_signal,
        "webhook": app.config_webhook,
    }
    return Push("http", "/config", body, str(app.config_version), "version", source_env="CONFIG_SOURCE")


def _volume_mounts(app: AppSpec) -> tuple[dict[str, str], list[Mount], dict[str, str]]:
    """Env telling the app where each volume is, the runtime's mounts of them, and the
    volumes linked into each revision (path in the revision -> variable)."""
    env, mounts, links = {}, [], {}
    for name, path in sorted(app.volumes.items()):
        variable = f"PAAS_VOLUME_{name.upper().replace('-', '_')}"
        where = path if path.startswith("/") else f"{VOLUMES}/{name}"
        env[variable] = where
        mounts.append(Mount(f"vol-{name}", where))
        if not path.startswith("/"):
            links[path] = variable
    return env, mounts, links


def inner_port(app: AppSpec) -> int:
    """Where the app listens inside the pod when a sidecar takes its published port."""
    return INNER_PORT if app.port != INNER_PORT else INNER_PORT + 1


def _runtime(app: AppSpec, workspace: Mount, fronted: bool) -> Container:
    volume_env, volume_mounts, links = _volume_mounts(app)
    live = settings(app)
    port = inner_port(app) if fronted else app.port
    env = {
        "PORT": str(port),
        "PAAS_APP_DIR": LINK,
        "PAAS_RUNTIME": app.runtime or "",
        "PAAS_CACHE_DIR": CACHE,
        "PAAS_CONFIG_DIR": CONFIG_DIR,
        "PAAS_SETTINGS_FILE": SETTINGS_FILE,
        "PAAS_SETTINGS": json.dumps(_without_secrets(live)),
        STATUS_CREDENTIAL_ENV: CREDENTIAL_PATH,
        **volume_env,
    }
    if links:
        env["PAAS_VOLUME_LINKS"] = json.dumps(links)
    # The node image is a superset (python, node, static): it serves apps whose runtime is detected.
    image = f"paas-runtime-{app.runtime or 'node'}:{__version__}"
    resources = Resources(app.memory, app.cpus) if app.memory or app.cpus else None
    return Container(
        RUNTIME,
        APP,
        image,
        ("paas-runtime",),
        env,
        ports=(
            # Fronted, only the sidecar in front of it (and the config sidecar's webhook) call it.
            Port("http", port, publish=not fronted, bind_env="PAAS_BIND", number_env="PORT", pod_only=fronted),
            Port("status", STATUS_PORT, bind_env="PAAS_STATUS_BIND"),
        ),
        mounts=(workspace, Mount("cache", CACHE), CREDENTIAL_MOUNT, *volume_mounts),
        resources=resources,
        readiness=Readiness("http", app.healthcheck_path),
        status=Status("status", "/status"),
        pushes=(Push("status", "/settings", live, live["version"], "received", source_env="PAAS_SETTINGS_SOURCE"),),
        live_env=("PAAS_SETTINGS",),
    )
