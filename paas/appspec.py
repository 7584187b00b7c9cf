"""The app spec: everything a pod is built from, as plain values — the stored app (its
manifest, port, credentials) resolved against the platform's settings (where pods reach
the git server, the default sidecars, which git-sync to run).

Data flows one way: manifest -> app spec -> pod spec (`paas.podspec`) -> backend. The
pod spec never reads the store or the manifest; this module is the one place that does.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field

from paas.ca import KeyPair
from paas.repos import DEPLOY_REF
from paas.store import App

# A hosted repo is synced at once on every push; the poll is only a safety net.
HOSTED_POLL_SECONDS = 30.0
# What the pod credential is derived for: changing it changes every pod's credential.
CREDENTIAL_LABEL = b"paas pod credential v1"


@dataclass(frozen=True)
class Platform:
    """Platform settings that shape every pod."""

    control_plane_url: str  # how pods reach the git server
    default_sidecars: tuple[str, ...] = ()
    git_sync_image: str = ""  # empty: paas-git-sync of this version
    git_sync_command: str = "git-sync"  # what the local backend runs
    domain: str = "localhost"  # apps are served at APP.<domain>
    router_tls_port: int = 0  # where the router takes TLS (what plain-HTTP redirects name); 0: none


@dataclass(frozen=True)
class Source:
    """What the sync container fetches, and with which credentials."""

    repo: str  # without credentials
    ref: str
    period: float  # seconds between polls
    username: str = ""
    password: str = field(default="", repr=False)


@dataclass(frozen=True)
class Sidecar:
    name: str
    from_platform: bool  # injected by PAAS_DEFAULT_SIDECARS, not asked for by the app


@dataclass(frozen=True)
class AppSpec:
    name: str
    port: int  # the app's public port
    source: Source
    runtime: str | None
    run: str | None
    env: dict[str, str]
    healthcheck_path: str
    healthcheck_timeout: int
    # The secret the pod's control endpoints want and the platform sends them (`credential`).
    credential: str = field(repr=False)
    memory: str | None = None
    cpus: float | None = None
    sidecars: tuple[Sidecar, ...] = ()
    config: dict[str, str] = field(default_factory=dict)  # the variables (override env)
    config_version: int = 0
    config_reload: str = "restart"
    config_signal: str = "SIGHUP"
    config_webhook: str = "/-/reload"
    generation: int = 0
    volumes: dict[str, str] = field(default_factory=dict)  # name -> path (absolute, or in the revision)
    hosts: tuple[str, ...] = ()  # the names it is served at: APP.<domain> first
    https_redirect: bool = False
    hsts: int = 0
    redirect_port: int = 0  # the port plain-HTTP redirects name (the router's TLS port)
    tls: KeyPair | None = field(default=None, repr=False)  # its certificate (with the https sidecar)
    # The one its owner added (`paas certs add`) for its names outside the platform's domain.
    tls_added: KeyPair | None = field(default=None, repr=False)

    def has(self, sidecar: str) -> bool:
        return any(s.name == sidecar for s in self.sidecars)


def resolve(app: App, platform: Platform, config: dict[str, str] | None = None) -> AppSpec:
    """``config``: the app's variables at its current config version."""
    m = app.manifest
    if m.hosted:
        source = Source(
            repo=f"{platform.control_plane_url.rstrip('/')}/git/{app.name}.git",
            ref=DEPLOY_REF,
            period=HOSTED_POLL_SECONDS,
            username="paas",
            password=app.deploy_token,
        )
    else:
        source = Source(m.source.clone_url or "", m.source.ref, m.source.period, m.source.username, app.git_password)
    declined = set(m.decline_sidecars)
    sidecars = [Sidecar(name, True) for name in platform.default_sidecars if name not in declined]
    sidecars += [Sidecar(name, False) for name in m.sidecars if name not in {s.name for s in sidecars}]
    return AppSpec(
        name=app.name,
        port=app.port,
        source=source,
        runtime=m.runtime,
        run=m.run,
        env=dict(m.env),
        healthcheck_path=m.healthcheck.path,
        healthcheck_timeout=m.healthcheck.timeout,
        credential=credential(app),
        memory=m.resources.memory if m.resources else None,
        cpus=m.resources.cpus if m.resources else None,
        sidecars=tuple(sidecars),
        config=dict(config or {}),
        config_version=app.config,
        config_reload=m.config.reload,
        config_signal=m.config.signal,
        config_webhook=m.config.webhook,
        generation=app.generation,
        volumes=dict(m.volumes),
        hosts=host_names(app.name, m.hosts, platform.domain),
        https_redirect=bool(m.https and m.https.redirect),
        hsts=m.https.hsts if m.https else 0,
        redirect_port=platform.router_tls_port,
    )


def credential(app: App) -> str:
    """The pod credential of ``app``: HMAC-SHA256 of a fixed label, keyed by the app's random
    deploy token. Derived, not stored — nothing new to keep, back up or migrate — distinct per
    app and unguessable without the token, and the token can't be recovered from it (the app
    itself, which can read its pod's credential, learns nothing that opens its repository)."""
    return hmac.new(app.deploy_token.encode(), CREDENTIAL_LABEL, hashlib.sha256).hexdigest()


def credentials(apps: Iterable[App]) -> dict[str, str]:
    """Each app's pod credential, by name: what a backend sends its pods' status endpoints."""
    return {app.name: credential(app) for app in apps}


def host_names(name: str, hosts: list[str], domain: str) -> tuple[str, ...]:
    """The names an app is served at: ``APP.<domain>``, then the manifest's own."""
    return tuple(dict.fromkeys([f"{name}.{domain}", *hosts]))
