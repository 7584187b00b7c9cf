"""The reconciler: compares what the store wants with what the backend runs, and mends it.

It is the only writer of release status after a deploy starts: it observes which revision
each pod's runtime serves (or failed) and records that, so views and the git server only
ever store intent; a deploy that fails another way (a full disk, a pod that can't run) ends
its release through ``end_release`` too — the one path that also has the control plane
point pods back at what serves. Every status change goes through the store's state machine
(``store.TRANSITIONS``): a release that failed or was cancelled never becomes live, even if
a pod is seen serving its revision.

What a pod reports is written by processes that share a volume with the app, so it is
believed only about revisions the control plane knows: a revision that no push, rollback
or (for an app that syncs a remote repository) the remote itself vouches for never becomes
a release.

Each pass asks the backend once for every pod and keeps that answer as the snapshot the
views read (``list`` of N apps costs nothing more). An error with one app's pod becomes an
event on that app; the pass goes on with the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from paas import appspec, jsonhttp, podspec, store
from paas.appspec import Platform
from paas.backends.base import Backend, PodStatus
from paas.ca import Issuer
from paas.errors import PaasError
from paas.podmodel import Container, PodSpec, Push
from paas.sidecars import HTTPS
from paas.store import App, Release, Store

if TYPE_CHECKING:
    from paas.runtime_status import RuntimeStatus

T = TypeVar("T")

log = logging.getLogger("paas.reconciler")
# While someone waits for a deploy's outcome (a push), passes come this often.
WATCH_INTERVAL = 0.1
PUSH_TIMEOUT = 5.0


class Reconciler:
    def __init__(
        self,
        store: Store,
        backend: Backend,
        platform: Platform,
        interval: float = 1.0,
        on_ended: Callable[[App, Release], None] | None = None,
        verify: Callable[[App, str], bool] | None = None,
        issuer: Issuer | None = None,
        on_pass: Callable[[list[appspec.AppSpec], dict[str, PodStatus]], None] | None = None,
    ) -> None:
        """``on_ended`` is told of each release that ended without serving (failed, cancelled),
        and again when a pod is seen serving one, so what pods are told to serve (the deploy
        ref, the config) goes back to what serves; ``verify(app, revision)`` says
        whether a revision a remote-source app's pod serves is really its repository's;
        ``issuer`` gives apps with the https sidecar their certificates; ``on_pass`` sees
        the app specs the pass resolved and its snapshot after every pass (the router's table is made from them)."""
        self.store, self.backend = store, backend
        self.platform = platform
        self.interval = interval
        self.on_ended = on_ended
        self.verify = verify
        self.issuer = issuer
        self.on_pass = on_pass
        # Held while changing desired or actual state, so a deletion and a pass never interleave.
        self.lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._restarts = store.restarts()
        self._errors: dict[str, str] = {}  # the last error applying each app's pod
        self._unknown: set[tuple[str, str]] = set()  # (app, revision) seen serving, not vouched for
        self._refused: set[tuple[str, int]] = set()  # (app, release) seen serving after it ended
        self._snapshot: dict[str, PodStatus] = {}
        self.generation = 0  # counts the passes whose snapshot differed from the one before
        self._watchers = 0
        self.passes = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def kick(self) -> None:
        """Run a pass now rather than at the next tick."""
        self._wake.set()

    def pods(self) -> dict[str, PodStatus]:
        """The pods as the last pass saw them (what views read)."""
        return self._snapshot

    def error(self, app: str) -> str | None:
        """Why the last pass could not make the app's pod run, if it could not."""
        return self._errors.get(app)

    @contextmanager
    def watching(self) -> Iterator[None]:
        """Pass every WATCH_INTERVAL while the caller waits for an outcome."""
        with self.lock:
            self._watchers += 1
        self.kick()
        try:
            yield
        finally:
            with self.lock:
                self._watchers -= 1

    def wait_pass(self, timeout: float = 10.0) -> None:
        """Return once a pass that started after this call has finished."""
        target = self.passes + 2  # the pass running now may have read the store before the caller wrote
        deadline = time.monotonic() + timeout
        while self.passes < target and time.monotonic() < deadline:
            self.kick()
            time.sleep(0.02)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.reconcile()
            except PaasError as e:
                log.warning("reconcile: %s", e.message)
            except Exception:  # the loop must outlive any one bad pass
                log.exception("reconcile pass failed")
            self._wake.wait(WATCH_INTERVAL if self._watchers else self.interval)
            self._wake.clear()

    def reconcile(self) -> None:
        with self.lock:
            apps = self.store.list_apps()
            actual = self.backend.pods(appspec.credentials(apps))
            if actual != self._snapshot:
                self.generation += 1
            self._snapshot = actual
            specs: dict[str, appspec.AppSpec] = {}
            for app in apps:
                if (spec := self._guarded(app.name, self.spec, app)) is not None:
                    specs[app.name] = spec
            # Before any release is marked live from this snapshot, so a push that reports
            # live finds the router already sending its host to the app.
            if self.on_pass is not None:
                try:
                    self.on_pass(list(specs.values()), actual)
                except Exception:  # the router's table must not keep the pods from being reconciled
                    log.exception("on_pass failed; the pass goes on")
            for app in apps:
                if app.name in specs:
                    self._guarded(app.name, self._reconcile_app, app, specs[app.name], actual.get(app.name))
            stored = {app.name for app in apps}
            for name in actual.keys() - stored:
                self.backend.remove(name)
                log.info("removed pod %s: its app is no longer stored", name)
            self.passes += 1

    def _guarded(self, name: str, step: Callable[..., T], *args: Any) -> T | None:
        """One app's step of a pass; its error is kept for the app, never stops the others."""
        try:
            return step(*args)
        except PaasError as e:
            self._error(name, e.message)
        except Exception as e:  # one app's surprise must not stop the others
            log.exception("reconciling %s failed", name)
            self._error(name, f"internal error: {type(e).__name__}")
        return None

    def _reconcile_app(self, app: App, wanted: appspec.AppSpec, pod: PodStatus | None) -> None:
        if app.problem:
            raise PaasError(f"the stored manifest is no longer valid ({app.problem}): its pod is left as it is")
        spec = podspec.build(wanted, self.platform)
        if pod is None or not pod.matches(spec):
            done = self.backend.apply(spec)
            if done:
                self.store.add_event(app.name, "pod", done)
        self._errors.pop(app.name, None)
        if pod is not None:
            self._observe(app, pod)
            self._deliver(spec, pod, wanted.credential)

    def spec(self, app: App) -> appspec.AppSpec:
        """The app spec of ``app``: its manifest and config resolved against the platform."""
        spec = appspec.resolve(app, self.platform, self.store.config(app.name, app.config))
        if spec.has(HTTPS):
            spec = replace(spec, tls_added=self.store.certificate(app.name))
            if self.issuer is not None:  # for the names it vouches for; an added certificate serves the rest
                issuer = self.issuer
                vouched = tuple(n for n in (*spec.hosts, "127.0.0.1") if issuer.vouches_for(n))
                spec = replace(spec, tls=issuer.issue(vouched))
        return spec

    def _deliver(self, spec: PodSpec, pod: PodStatus, credential: str) -> None:
        """Deliver each push whose container reports another version than the wanted one,
        with the pod's ``credential`` (a container takes none without it)."""
        for container, push in pushes_due(spec, pod):
            url = self.backend.endpoint(spec.app, container.name, push.port)
            if url is None:
                continue
            try:
                status, answer = jsonhttp.call(
                    "PUT", f"{url}{push.path}", PUSH_TIMEOUT, body=push.body, credential=credential
                )
            except jsonhttp.Unreachable:
                continue  # starting: the next pass delivers it
            if status >= 400:
                error = answer.get("error") if isinstance(answer, dict) else f"HTTP {status}"
                raise PaasError(f"{container.name} refused its {push.path.strip('/')}: {error}")

    def _error(self, app: str, message: str) -> None:
        """Record an error with an app's pod once (not once per pass); a store that can't
        take the event (a full disk) leaves it in the log, and the pass goes on."""
        if self._errors.get(app) != message:
            self._errors[app] = message
            try:
                self.store.add_event(app, "error", message)
            except PaasError as e:
                log.warning("%s: %s (not recorded: %s)", app, message, e.message)

    def end_release(self, app: App, release: Release, status: str, reason: str) -> bool:
        """End ``release`` without it serving (``status``: failed or cancelled) — the one way a
        release ends so — and have ``on_ended`` point pods back at what serves. Whether this
        call ended it: a release that served or ended meanwhile keeps its status (the store's
        state machine refuses the move), which is logged, not raised."""
        with self.lock:
            ended = self.store.set_release_status(app.name, release.number, status, reason)
            if ended:
                first = reason.splitlines()[0] if reason else status
                self.store.add_event(app.name, "deploy", f"v{release.number} {status}: {first}")
            else:
                now = self.store.release(app.name, release.number).status
                log.info("%s v%d is %s: not made %s (%s)", app.name, release.number, now, status, reason[:200])
                if now not in store.ENDED:
                    return False
            if self.on_ended is not None:
                self.on_ended(app, release)
            return ended

    def _observe(self, app: App, pod: PodStatus) -> None:
        name = app.name
        for c in pod.containers:
            seen = self._restarts.get((name, c.name), 0)
            if c.restarts > seen:
                exit_code = f", exit code {c.exit_code}" if c.exit_code is not None else ""
                self.store.add_event(
                    name, "restart", f"{c.name} exited and was restarted (restart {c.restarts}{exit_code})"
                )
            if c.restarts != seen:  # fewer: the container is a new one, counting afresh
                self._restarts[(name, c.name)] = c.restarts
                self.store.set_restarts(name, c.name, c.restarts)
        releases = self.store.releases(name)
        serving, config = pod.runtime.serving, pod.runtime.config_version
        if serving and pod.runtime.settled:
            current = self._known(app, releases, serving, config)
            if current is not None:
                self._serves(app, releases, current)
        release = failed_release(releases, pod.runtime)
        if release is not None and pod.runtime.failed is not None:
            reason = (pod.runtime.failed.reason or "the new revision failed")[-8000:]
            self.end_release(app, release, store.FAILED, reason)
            self._cancel_older(app, releases, release.number)

    def _known(self, app: App, releases: list[Release], revision: str, config: int) -> Release | None:
        """The release a serving revision (with its config) belongs to — never one that ended
        without serving; a new one for a vouched-for remote revision."""
        current = _release_of(releases, revision, config, ended=False)
        if current is not None:
            return current
        if (ended := _release_of(releases, revision, config)) is not None:
            return self._ended_serves(app, ended, config)
        if (app.name, revision) in self._unknown:
            return None
        if self._vouched(app, revision):
            return self.store.add_release(app.name, revision, f"synced from {app.manifest.source.ref}", config)
        self._unknown.add((app.name, revision))
        self.store.add_event(
            app.name, "error", f"the pod reports serving {revision[:12]}, a revision this app never deployed"
        )
        return None

    def _vouched(self, app: App, revision: str) -> bool:
        """Whether the remote repository an app syncs names ``revision`` (never for hosted apps:
        their revisions come from pushes and rollbacks only)."""
        return not app.manifest.hosted and self.verify is not None and self.verify(app, revision)

    def _ended_serves(self, app: App, ended: Release, config: int) -> Release | None:
        """A pod serves the revision of a release that failed or was cancelled (it fetched it
        before the deploy ref went back, or a remote's pod built it again). That release stays
        as it ended; a remote that still names the revision gets a new release of it, which
        serves; a hosted app's pods are pointed back at what serves."""
        if (app.name, ended.number) in self._refused:
            return None
        self._refused.add((app.name, ended.number))
        if self._vouched(app, ended.revision):
            message = f"synced from {app.manifest.source.ref} (again, after v{ended.number} {ended.status})"
            return self.store.add_release(app.name, ended.revision, message, config)
        self.store.add_event(
            app.name, "deploy",
            f"the pod serves {ended.revision[:12]}, the revision of v{ended.number}, which {ended.status}: "
            f"it stays {ended.status}, and the pod is pointed back at what serves",
        )
        if self.on_ended is not None:
            self.on_ended(app, ended)
        return None

    def _serves(self, app: App, releases: list[Release], current: Release) -> None:
        name = app.name
        if current.status != store.LIVE and not self.store.set_release_status(name, current.number, store.LIVE):
            now = self.store.release(name, current.number).status  # it ended since the pass read it
            log.info("%s v%d: not made live (it is %s)", name, current.number, now)
            return
        for r in releases:
            if r.status == store.LIVE and r.number != current.number:
                self.store.set_release_status(name, r.number, store.SUPERSEDED)
        self._cancel_older(app, releases, current.number)

    def _cancel_older(self, app: App, releases: list[Release], number: int) -> None:
        """Pending releases older than one that reached an outcome will never serve."""
        for r in releases:
            if r.status == store.PENDING and r.number < number:
                self.end_release(app, r, store.CANCELLED, "a newer release came first")


def pushes_due(spec: PodSpec, pod: PodStatus) -> list[tuple[Container, Push]]:
    """The documents to deliver: each push of a running container whose status reports
    another version than the push's (a container not running yet gets it once it runs)."""
    running = {c.name for c in pod.containers if c.state == "running"}
    return [
        (container, push)
        for container in spec.containers
        if container.name in running
        for push in container.pushes
        if str(pod.statuses.get(container.name, {}).get(push.key)) != push.version
    ]


def failed_release(releases: list[Release], runtime: RuntimeStatus) -> Release | None:
    """The pending release the runtime's failure ends: the release of the revision (and config)
    it says failed, unless that is what it serves."""
    failed = runtime.failed
    if failed is None or not failed.revision:
        return None
    if (failed.revision, failed.config_version) == (runtime.serving, runtime.config_version):
        return None
    release = _release_of(releases, failed.revision, failed.config_version)
    return release if release is not None and release.status == store.PENDING else None


def _release_of(releases: list[Release], revision: str, config: int, ended: bool = True) -> Release | None:
    """The newest release of ``revision`` with ``config``; with none, of ``revision`` (a
    release stored before config versions existed). ``ended=False``: only among releases
    that did not end without serving (failed, cancelled)."""
    candidates = [r for r in releases if ended or r.status not in store.ENDED]
    exact = next((r for r in candidates if r.revision == revision and r.config == config), None)
    return exact or next((r for r in candidates if r.revision == revision and r.config == 0), None)
