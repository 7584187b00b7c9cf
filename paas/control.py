"""The control plane's operations, shared by the API, the git server and the console."""

from __future__ import annotations

import logging
import secrets
import socket
from collections.abc import Iterator

import requests

from paas import manifest as manifest_mod
from paas.backends.base import Backend, PodStatus
from paas.errors import InvalidInput, PaasError, PortInUse, RevisionNotFound
from paas.manifest import Manifest
from paas.names import check_app_name
from paas.reconciler import Reconciler
from paas.repos import Repos
from paas.settings import Settings
from paas.store import LIVE, SUPERSEDED, Release, Store

log = logging.getLogger("paas")
APP_PORTS = range(10000, 20000)
SYNC_TIMEOUT = 30.0


class ControlPlane:
    def __init__(self, settings: Settings, backend: Backend) -> None:
        self.settings = settings
        self.store = Store(settings.data_dir / "paas.sqlite3")
        self.repos = Repos(settings.data_dir / "repos")
        self.backend = backend
        self.reconciler = Reconciler(self.store, backend, settings.pod_url, settings.reconcile_interval)

    def start(self) -> None:
        self.ensure_deploy_refs()
        self.reconciler.start()

    def close(self) -> None:
        self.reconciler.stop()
        self.backend.close()
        self.store.close()

    # apps

    def create(self, text: str | bytes) -> str:
        """Store a new app from its manifest text; its pod starts on the next reconcile."""
        m = manifest_mod.parse(text)
        with self.reconciler.lock:
            port = self._port_for(m)
            app = self.store.create_app(m, port, secrets.token_urlsafe(24))
            if m.hosted:
                try:
                    self.repos.create(app.name, m.source.ref)
                except Exception:
                    self.store.delete_app(app.name)
                    raise
            self.store.add_event(app.name, "app", f"created on port {port}")
        self.reconciler.kick()
        return app.name

    def delete(self, name: str) -> None:
        check_app_name(name)
        with self.reconciler.lock:
            self.store.get_app(name)
            self.backend.remove(name)
            self.repos.delete(name)
            self.store.delete_app(name)

    def describe(self, name: str, host: str | None = None) -> dict:
        app = self.store.get_app(check_app_name(name))
        pod = self.backend.pods().get(name)
        releases = self.store.releases(name)
        m = app.manifest
        return app.to_json() | {
            "url": f"http://{host or self._public_host()}:{app.port}/",
            "runtime": m.runtime,
            "state": _state(pod, releases, m),
            "revision": (pod.runtime.get("serving") if pod else None),
            "release": releases[0].to_json() if releases else None,
            "containers": [c.__dict__ for c in pod.containers] if pod else [],
            "runtime_state": pod.runtime if pod else {},
            "events": [e.to_json() for e in self.store.events(name, 20)],
        }

    def list(self, host: str | None = None) -> list[dict]:
        return [self.describe(app.name, host) for app in self.store.list_apps()]

    def releases(self, name: str) -> list[Release]:
        self.store.get_app(check_app_name(name))
        return self.store.releases(name)

    def logs(self, name: str, follow: bool = False, tail: int = 200) -> Iterator[str]:
        self.store.get_app(check_app_name(name))
        return self.backend.logs(name, follow=follow, tail=tail)

    # deploys

    def record_push(self, name: str, before: str | None) -> Release | None:
        """After a push to a hosted repo: store a release for a new head and sync the pod now."""
        app = self.store.get_app(name)
        head = self.repos.head(name, app.manifest.source.ref)
        if head is None or head == before:
            return None
        self.repos.deploy(name, head)
        release = self.store.add_release(name, head, message=self.repos.subject(name, head))
        self.store.add_event(name, "deploy", f"push stored v{release.number} ({head[:12]})")
        self.sync_now(name)
        return release

    def rollback(self, name: str, target: str | None = None) -> Release:
        """Serve an earlier revision that served before, as a new release (zero downtime: the
        runtime switches to it like to any new revision); a later push moves forward again."""
        app = self.store.get_app(check_app_name(name))
        if not app.manifest.hosted:
            raise InvalidInput(
                f"{name} syncs {app.manifest.source.repo}: roll back by moving {app.manifest.source.ref} there"
            )
        releases = self.store.releases(name)
        current = self.repos.deployed(name)
        served = [r for r in releases if r.status in (LIVE, SUPERSEDED)]
        if target is None:
            earlier = [r for r in served if r.revision != current]
            if not earlier:
                raise InvalidInput(f"{name} has no earlier release that served to roll back to")
            chosen = earlier[0]
        else:
            chosen = _find_release(releases, target)
            if chosen.status not in (LIVE, SUPERSEDED):
                raise InvalidInput(
                    f"release v{chosen.number} of {name} never served ({chosen.status}); pick one that did"
                )
            if chosen.revision == current:
                raise InvalidInput(f"release v{chosen.number} of {name} is what is deployed already")
        with self.reconciler.lock:
            self.repos.deploy(name, chosen.revision)
            release = self.store.add_release(
                name, chosen.revision, message=f"rollback to v{chosen.number}: {chosen.message}"
            )
        self.store.add_event(
            name, "deploy", f"rollback: v{release.number} serves v{chosen.number} ({chosen.revision[:12]})"
        )
        self.sync_now(name)
        return release

    def ensure_deploy_refs(self) -> None:
        """Repos made before deploy refs existed deploy their branch's head."""
        for app in self.store.list_apps():
            if app.manifest.hosted and self.repos.deployed(app.name) is None:
                head = self.repos.head(app.name, app.manifest.source.ref)
                if head:
                    self.repos.deploy(app.name, head)

    def sync_now(self, name: str) -> None:
        """Tell the pod's git-sync to sync at once; its poll catches up if it can't be reached."""
        url = self.backend.sync_url(name)
        if url is None:
            return
        try:
            response = requests.post(f"{url}/sync", timeout=SYNC_TIMEOUT)
            if response.status_code >= 400:
                self.store.add_event(name, "sync", f"git-sync could not sync: {_error_text(response)}")
        except requests.RequestException as e:
            self.store.add_event(name, "sync", f"git-sync not reachable ({type(e).__name__}); it will poll")
        self.reconciler.kick()

    # helpers

    def _public_host(self) -> str:
        return "127.0.0.1" if self.settings.host in ("0.0.0.0", "::", "") else self.settings.host

    def _port_for(self, m: Manifest) -> int:
        used = self.store.used_ports() | {self.settings.port}
        if m.port is not None:
            if m.port in used:
                raise PortInUse(f"port {m.port} is already used by another app or the control plane")
            if not _bindable(m.port):
                raise PortInUse(f"port {m.port} is already in use on this machine")
            return m.port
        for port in APP_PORTS:
            if port not in used and _bindable(port):
                return port
        raise PaasError("no free port left for a new app")


def _find_release(releases: list[Release], target: str) -> Release:
    """A release by number (``3`` or ``v3``) or by a prefix of its commit (7+ hex digits)."""
    text = target.strip().lower()
    number = text[1:] if text.startswith("v") else text
    if number.isdigit():
        found = [r for r in releases if r.number == int(number)]
    elif len(text) >= 7 and all(c in "0123456789abcdef" for c in text):
        found = [r for r in releases if r.revision.startswith(text)][:1]
    else:
        raise InvalidInput(
            f"revision {target!r}: give a release number (v3) or a commit hash (7+ hex digits)"
        )
    if not found:
        raise RevisionNotFound(f"no release {target!r}")
    return found[0]


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _error_text(response: requests.Response) -> str:
    try:
        return str(response.json().get("error"))
    except ValueError:
        return f"HTTP {response.status_code}"


def _state(pod: PodStatus | None, releases: list[Release], m: Manifest) -> str:
    """One word for a person: how the app is, as far as we can observe."""
    if pod is None:
        return "pending"
    if not pod.running:
        return "starting" if all(c.restarts == 0 for c in pod.containers) else "restarting"
    status = pod.runtime.get("status", "waiting")
    if status == "waiting" and not pod.runtime.get("target"):
        return "waiting for a push" if m.hosted and not releases else "syncing"
    if status in ("building", "starting"):
        return "deploying"
    if status == "failed" and not pod.runtime.get("serving"):
        return "failed"
    return "running" if pod.runtime.get("serving") else status
