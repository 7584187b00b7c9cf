"""The control plane's operations, shared by the API, the git server and the console."""

from __future__ import annotations

import logging
import secrets
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

from paas import appspec, certs, credentials, hosts, jsonhttp, podspec, remote, routes
from paas import manifest as manifest_mod
from paas.appspec import Platform
from paas.backends.base import Backend, PodStatus
from paas.backends.kubernetes import render
from paas.backends.kubernetes.options import export_options
from paas.ca import CertificateAuthority
from paas.deploys import Deploys
from paas.diskspace import Room
from paas.errors import (
    BackendUnavailable,
    CertificateNotFound,
    Conflict,
    InvalidManifest,
    PaasError,
    PortInUse,
)
from paas.lifecycle import Lifecycle, check_variables
from paas.manifest import Manifest
from paas.names import check_app_name
from paas.reconciler import Reconciler
from paas.repos import Repos
from paas.settings import Settings, instance_id
from paas.sidecars import HTTPS, TOPZ
from paas.status import describe
from paas.store import App, Release, Store

log = logging.getLogger("paas")
APP_PORTS = range(10000, 20000)


class ControlPlane:
    def __init__(self, settings: Settings, backend: Backend) -> None:
        self.settings = settings
        self.closing = threading.Event()  # set when the control plane stops: streams end
        self.store = Store.in_data_dir(settings.data_dir)
        self.repos = Repos(settings.data_dir / "repos")
        self.backend = backend
        self.platform = Platform(
            control_plane_url=settings.pod_url,
            default_sidecars=settings.sidecars,
            git_sync_image=settings.git_sync_image,
            git_sync_command=settings.git_sync_command,
            domain=settings.domain,
            router_tls_port=settings.router_tls_port,
        )
        self.ca = platform_ca(settings)
        self.routes = routes.TableWriter(routes.table_path(settings.data_dir))
        self.reconciler = Reconciler(
            self.store,
            backend,
            self.platform,
            settings.reconcile_interval,
            on_ended=self._release_ended,
            verify=_vouched,
            issuer=self.ca,
            on_pass=self._routes_changed,
        )
        room = Room(settings.data_dir, settings.min_free_mb)
        self.deploys = Deploys(self.store, self.repos, backend, self.reconciler, settings.sync_trigger, room)
        self.lifecycle = Lifecycle(self.store, backend, self.reconciler, self.deploys)

    def start(self) -> None:
        replaced = replace_unfit_ca(self.ca, self.store)  # made on the first start (`paas up` checks first)
        if replaced:
            log.warning(replaced)
        apps = self.store.list_apps()
        for app in apps:
            if not app.manifest.hosted:
                continue
            if self.repos.path(app.name).is_dir():
                self.repos.configure(app.name, app.manifest.source.ref)
            else:  # lost from the data directory: a push deploys it again
                self.repos.create(app.name, app.manifest.source.ref)
                self.store.add_event(app.name, "error", "its git repository was missing: an empty one was made; "
                                     "git push to deploy it again")
        self.deploys.recover(apps)
        self.reconciler.start()

    def close(self) -> None:
        self.closing.set()
        self.reconciler.stop()
        self.backend.close()
        self.store.close()

    # apps

    def create(self, text: str | bytes, password: str | None = None) -> str:
        """Store a new app from its manifest text (``password``: its repository's, given apart
        from it); its pod starts on the next reconcile."""
        m = manifest_mod.parse(text)
        git_password = credentials.password_for(m.source, password)
        with self.reconciler.lock:
            self.lifecycle.check(App(m.name, m, 0, "", 0.0))
            self._check_hosts(m)
            port = self._port_for(m)
            app = self.store.create_app(m, port, secrets.token_urlsafe(24), git_password)
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

    def app(self, name: str) -> App:
        return self.store.get_app(check_app_name(name))

    def describe(self, name: str, host: str | None = None) -> dict:
        app = self.app(name)
        pod = self.reconciler.pods().get(app.name)
        return describe(app, pod, self.store.releases(app.name), self.store.events(app.name, 20),
                        self.urls_of(app, host))

    def list_apps(self, host: str | None = None) -> list[dict]:
        pods = self.reconciler.pods()
        return [
            describe(app, pods.get(app.name), self.store.releases(app.name), [], self.urls_of(app, host))
            for app in self.store.list_apps()
        ]

    def changes(self) -> tuple[int, int]:
        """A reading that differs whenever what the views show may have: the store's writes
        and the reconciler's changed snapshots (no query, no backend call)."""
        return self.store.changes, self.reconciler.generation

    def urls_of(self, app: App, host: str | None = None) -> list[str]:
        """Where the app is served, best first: by host name through the router (https with
        the https sidecar, then http), then its own port (``host``: as the caller reached us)."""
        spec = appspec.resolve(app, self.platform)
        tls = spec.has(HTTPS)
        scheme = "https" if tls else "http"
        urls = []
        for name in spec.hosts:
            if tls and self.settings.router_tls_port:
                urls.append(_url("https", name, self.settings.router_tls_port))
            if self.settings.router_port:
                urls.append(_url("http", name, self.settings.router_port))
        return [*urls, _url(scheme, host or self._public_host(), app.port)]

    def ca_certificate(self) -> str:
        """The platform CA's certificate (PEM), for users to trust."""
        return self.ca.certificate()

    # certificates

    def certificates(self, name: str) -> dict:
        """The app's certificates — the one added for its own names, the platform CA's with
        the https sidecar — and the host names neither covers."""
        app = self.app(name)
        spec = self.reconciler.spec(app)
        added = self.store.certificate(app.name)
        shown = [certs.describe(added.certificate, "added", spec.hosts)] if added else []
        if spec.tls:
            shown.append(certs.describe(spec.tls.certificate, "platform CA", spec.hosts))
        covered = {host for cert in shown for host in cert["serves"]}
        return {"app": app.name, "https": spec.has(HTTPS), "certificates": shown,
                "uncovered": [host for host in spec.hosts if host not in covered]}

    def add_certificate(self, name: str, chain: str, key: str) -> dict:
        """Check and store the certificate for the app's own names; its pod serves it from the
        next reconcile. A pair that fails a check changes nothing."""
        app = self.app(name)
        hosts = appspec.host_names(app.name, app.manifest.hosts, self.settings.domain)
        pair = certs.check(chain, key, app.name, hosts)
        with self.reconciler.lock:  # not into an app deleted meanwhile
            self.store.set_certificate(self.app(name).name, pair)
        shown = certs.describe(pair.certificate, "added", hosts)
        self.store.add_event(app.name, "certificate", f"certificate added for {', '.join(shown['names'])}, "
                             f"valid until {shown['not_after']}, SHA-256 {shown['fingerprint']}")
        self.reconciler.kick()
        return self.certificates(name)

    def remove_certificate(self, name: str) -> dict:
        app = self.app(name)
        if not self.store.remove_certificate(app.name):
            raise CertificateNotFound(f"{app.name} has no added certificate to remove")
        self.store.add_event(app.name, "certificate", "the added certificate was removed")
        self.reconciler.kick()
        return self.certificates(name)

    def releases(self, name: str) -> list[Release]:
        return self.store.releases(self.app(name).name)

    def logs(self, name: str, follow: bool = False, tail: int = 200) -> Iterator[str]:
        return self.backend.logs(self.app(name).name, follow=follow, tail=tail)

    def processes(self, name: str) -> list[dict]:
        """What runs in the app's pod, as its topz sidecar sees the pod's PID namespace; each
        process names its container (topz gives a container id where it can't)."""
        app = self.app(name)
        url = self.backend.endpoint(app.name, TOPZ, "http")
        if url is None:
            raise Conflict(
                f"{app.name} has no running topz sidecar to list its processes: add `sidecars: [topz]` "
                "to its manifest, or make it a platform default (PAAS_DEFAULT_SIDECARS=topz)"
            )
        try:
            status, answer = jsonhttp.call("GET", f"{url}/topz", 10, {"format": "json"}, credential=appspec.credential(app))
            found = answer["processes"] if status == 200 else None
        except (jsonhttp.Unreachable, KeyError, TypeError):
            found = None
        if not isinstance(found, list):
            raise BackendUnavailable(f"the topz sidecar of {app.name} did not answer; try again")
        pod = self.reconciler.pods().get(app.name)
        ids = [(c.id, c.name) for c in pod.containers if c.id] if pod else []
        for process in found:
            container = str(process.get("container") or "")
            process["container"] = next((n for i, n in ids if container and container.startswith(i)), container)
        return found

    def export(self, name: str, kube_version: str = "", image_prefix: str | None = None,
               namespace: str | None = None, host: str = "") -> str:
        """The app as Kubernetes objects (YAML), to `kubectl apply -f` on any cluster."""
        app = self.app(name)
        options = export_options(self.settings, kube_version, image_prefix, namespace, host)
        spec = podspec.build(self.reconciler.spec(app), self.platform)
        return render.to_yaml(render.render(spec, options))

    # deploys

    def rollback(self, name: str, target: str | None = None, wait: bool = True) -> tuple[Release, Release]:
        return self.deploys.rollback(self.app(name), target, wait)

    # changes after creation

    def apply(self, name: str, text: str | bytes, password: str | None = None) -> dict:
        """Apply a changed manifest (``password``: its repository's, given apart from it)."""
        app = self.app(name)
        m = manifest_mod.parse(text)
        with self.reconciler.lock:
            self._check_hosts(m)
            port = app.port if m.port in (None, app.port) else self._port_for(m)
        result = self.lifecycle.apply(app, m, port, password)
        return result | {"app": self.describe(name)}

    def config(self, name: str) -> dict:
        return self.lifecycle.config(self.app(name))

    def set_config(self, name: str, changes: object) -> dict:
        return self.lifecycle.set_config(self.app(name), check_variables(changes))

    def restart(self, name: str, hard: bool = False) -> dict:
        return self.lifecycle.restart(self.app(name), hard)

    def _release_ended(self, app: App, release: Release) -> None:
        self.deploys.release_ended(app, release)

    def _routes_changed(self, specs: list[appspec.AppSpec], pods: dict[str, PodStatus]) -> None:
        """After every reconcile pass: the router's table, from the pass's app specs and pods."""
        self.routes.write(routes.build(specs, pods, self._public_host(), self.settings.domain))

    def _check_hosts(self, m: Manifest) -> None:
        """Refuse `hosts` no app may claim (each problem with its field path), then a host name
        another app is served at: a host name serves one app. An app's own NAME.<domain> is its
        own even if an app stored before these rules claims it (the router gives it to NAME)."""
        domain = self.settings.domain
        platform = {urlsplit(url).hostname or "" for url in (self.settings.url, self.settings.pod_url)}
        problems = hosts.claim_problems(m.name, m.hosts, domain, platform - {""})
        if problems:
            raise InvalidManifest(f"invalid manifest: {'; '.join(problems)}", problems)
        wanted = set(appspec.host_names(m.name, m.hosts, domain)) - {f"{m.name}.{domain}"}
        for other in self.store.list_apps():
            if other.name == m.name:
                continue
            taken = wanted & set(appspec.host_names(other.name, other.manifest.hosts, domain))
            if taken:
                raise Conflict(f"host name {sorted(taken)[0]} is already served by the app {other.name}")

    # helpers

    def _public_host(self) -> str:
        host = self.settings.app_address
        return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host

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


def platform_ca(settings: Settings) -> CertificateAuthority:
    """The CA in the data directory, constrained to the platform's domain and loopback."""
    return CertificateAuthority(settings.data_dir / "ca", instance_id(settings.data_dir), settings.domain)


def replace_unfit_ca(ca: CertificateAuthority, store: Store) -> str:
    """Load the platform CA; when a kept one had to be replaced (no name constraints, or
    another domain's), every app gets an event saying to trust it again. Returns that sentence."""
    replaced = ca.ensure()
    if replaced:
        for app in store.list_apps():
            store.add_event(app.name, "certificate", replaced)
    return replaced


def _url(scheme: str, host: str, port: int) -> str:
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}/" if port == default else f"{scheme}://{host}:{port}/"


def _vouched(app: App, revision: str) -> bool:
    """Whether the remote repository of ``app`` names ``revision`` at its ref."""
    named = remote.head(app.manifest.source, app.git_password)
    return any(revision == c or (len(c) < 40 and revision.startswith(c)) for c in named)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True
