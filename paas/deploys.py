"""Deploys of hosted apps: what a push, a rollback and a restart of the control plane do to
the deploy ref pods sync, and how a push learns its deploy's outcome.

The deploy ref (``refs/paas/deploy``) only ever points at the release that serves or the
one being deployed: a release that fails or is cancelled (a newer one came first, a
control-plane stop cut it short) moves it back to the release that serves, so a pod made
afresh — after a restart, a crash or a replacement — never revives a release that did not
serve. A deploy needs room on the data directory: with too little, its release fails at
once saying how much is left, instead of waiting on a pod that can't write.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from paas import appspec, diskspace, jsonhttp
from paas import store as st
from paas.backends.base import Backend
from paas.diskspace import Room
from paas.errors import Conflict, InvalidInput, PaasError, RevisionNotFound
from paas.podspec import GIT_SYNC, SYNC_SIGNAL
from paas.reconciler import Reconciler
from paas.repos import Repos
from paas.runtime_status import RuntimeStatus
from paas.store import App, Release, Store

log = logging.getLogger("paas.deploys")
SYNC_TIMEOUT = 30.0
SYNC_STARTING = 3.0  # how long a git-sync that refuses connections may still be starting
# How long a push waits for its deploy's outcome before it leaves it to `paas status`.
OUTCOME_TIMEOUT = 900.0
LIVE_TIMEOUT = 300.0  # how long a rollback or a change waits for the app to serve with it
_RELEASE_NUMBER = re.compile(r"v?([0-9]+)")  # ASCII digits: str.isdigit() takes '²' too


@dataclass(frozen=True)
class Outcome:
    release: Release
    seconds: float
    serving: Release | None  # what serves now (after a failure: what keeps serving)

    @property
    def status(self) -> str:
        return self.release.status

    def check(self, what: str) -> Release:
        """The release, unless it failed: then Conflict naming ``what`` failed and what keeps serving."""
        if self.status in (st.LIVE, st.PENDING):
            return self.release
        keeps = f"v{self.serving.number} keeps serving" if self.serving else "nothing serves"
        lines = self.release.reason.splitlines() if self.release.reason else [self.status]
        raise Conflict(f"{what} ({lines[0]}); {keeps}", lines[1:][-12:])


class Deploys:
    def __init__(
        self, store: Store, repos: Repos, backend: Backend, reconciler: Reconciler, trigger: str = "auto",
        room: Room | None = None,
    ) -> None:
        self.store, self.repos, self.backend, self.reconciler = store, repos, backend, reconciler
        self.trigger = trigger  # PAAS_SYNC_TRIGGER: auto, http or signal
        self.room = room  # what a deploy needs free on the data directory (None: not checked)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def push_lock(self, app: str) -> threading.Lock:
        """Held through a push, so a second push to the app waits for the first's outcome."""
        with self._locks_lock:
            return self._locks.setdefault(app, threading.Lock())

    # pushes

    def record_push(self, app: App, before: str | None) -> Release | None:
        """After a push: store a release for the branch's new head and deploy it; the release
        as it stands (failed already if it can't deploy). It is stored before the deploy ref
        moves, so a store that can't write (raising DiskFull) leaves pods where they were."""
        name = app.name
        head = self.repos.head(name, app.manifest.source.ref)
        if head is None or head == before:
            return None
        with self.reconciler.lock:
            release = self.store.add_release(name, head, message=self.repos.subject(name, head))
            self.store.add_event(name, "deploy", f"push stored v{release.number} ({head[:12]})")
            pointed = self._point(app, release)
        return self._fetch(app, release) if pointed else self.store.release(name, release.number)

    # What would leave a deploy waiting on a pod that can't get its release fails the release
    # at once, with the deploy ref back where it was: too little room on the data directory,
    # a ref git can't write (_point), a git-sync that tried and could not sync it (_fetch).

    def _point(self, app: App, release: Release) -> bool:
        """Point pods at ``release`` (the deploy ref), the reconciler's lock held; whether it
        could (else the release failed)."""
        reason = self._shortage()
        if reason is None:
            try:
                self.repos.deploy(app.name, release.revision)
                return True
            except PaasError as e:
                reason = "\n".join([e.message, *e.details])
        self.reconciler.end_release(app, release, st.FAILED, reason)
        return False

    def _fetch(self, app: App, release: Release) -> Release:
        """Have git-sync fetch the deploy ref now; the release as it stands after."""
        error = self.sync_now(app)
        if error is not None:
            room = f"\nthe data directory has {diskspace.free_mb(self.room.path)} MB free" if self.room else ""
            self.reconciler.end_release(app, release, st.FAILED, f"git-sync could not fetch it: {error}{room}")
        return self.store.release(app.name, release.number)

    def _shortage(self) -> str | None:
        """Why the data directory can't take a deploy now (as a release's reason), or None."""
        short = self.room.shortage() if self.room is not None else None
        return short.reason if short is not None else None

    def await_outcome(
        self, app: str, release: Release, say: Callable[[str], None], timeout: float = OUTCOME_TIMEOUT
    ) -> Outcome:
        """Wait until ``release`` is live, failed or cancelled, telling ``say`` each step the
        runtime reports on the way; returns the release as it stands at the deadline."""
        began = time.monotonic()
        told = 0
        with self.reconciler.watching():
            while True:
                current = self.store.release(app, release.number)
                pod = self.reconciler.pods().get(app)
                steps = [s for s in pod.runtime.steps if s.revision == release.revision] if pod else []
                for step in steps[told:]:
                    say(step.text)
                told = max(told, len(steps))
                if current.status == st.PENDING:
                    # The pod can't even run, or can't write: this release never will either.
                    error = self.reconciler.error(app)
                    reason = f"the pod can't run: {error}" if error else self._shortage()
                    if reason is not None:
                        self.reconciler.end_release(self.store.get_app(app), current, st.FAILED, reason)
                        current = self.store.release(app, current.number)
                if current.status != st.PENDING or time.monotonic() - began >= timeout:
                    return Outcome(current, time.monotonic() - began, self.store.served(app))
                time.sleep(0.05)

    def undo_push(self, app: App, pushed: str, before: str | None) -> bool:
        """A failed push leaves the branch where it was, so it holds the code that serves;
        whether it could be moved back from ``pushed``."""
        return self.repos.reset_branch(app.name, app.manifest.source.ref, before, pushed)

    def release_ended(self, app: App, release: Release) -> None:
        """``release`` failed or was cancelled (or a pod was seen serving it after): the deploy
        ref and the config go back to what serves — unless a newer release of the same
        revision is still being deployed."""
        name = app.name
        app = self.store.get_app(name)  # its config as it is now, not as the caller read it
        releases = self.store.releases(name)
        serving = next((r for r in releases if r.status == st.LIVE), None)
        deploying = any(r.status == st.PENDING and r.number > release.number and r.revision == release.revision
                        for r in releases)
        if app.manifest.hosted and not deploying and self.repos.deployed(name) == release.revision:
            self.repos.deploy(name, serving.revision if serving else None)
            if name in self.reconciler.pods():  # its git-sync follows now, not at its next poll
                threading.Thread(target=self._resync, args=(app,), name=f"resync-{name}", daemon=True).start()
        if serving is not None and app.config == release.config != serving.config:
            self.store.use_config(name, serving.config)

    def _resync(self, app: App) -> None:
        try:
            self.sync_now(app)
        except Exception as e:  # the app was deleted, the control plane stopped: its poll will do
            log.info("%s: could not tell git-sync the deploy ref went back: %s", app.name, e)

    def sync_now(self, app: App) -> str | None:
        """Tell the pod's git-sync to sync at once: `POST /sync` (ours answers with the new
        revision); else — upstream's git-sync has no such route, or PAAS_SYNC_TRIGGER=signal —
        its --sync-on-signal signal, delivered by the backend. Its poll catches up if neither
        reaches it. Returns the error of a sync that ran and failed, as git-sync said it."""
        name = app.name
        failed: list[str] = []
        if self.trigger != "signal" and (self._post_sync(app, failed) or self.trigger == "http"):
            self.reconciler.kick()
            return failed[0] if failed else None
        if not self.backend.signal(name, GIT_SYNC, getattr(signal, SYNC_SIGNAL)):
            self.store.add_event(name, "sync", "git-sync is not running; it will sync when it starts")
        self.reconciler.kick()
        return None

    def _post_sync(self, app: App, failed: list[str]) -> bool:
        """`POST /sync` with the pod's credential; whether a git-sync that has it answered
        (successfully or not). The error of a sync that ran and failed (500, 502; not 503: it
        is stopping) goes to ``failed``."""
        name, credential = app.name, appspec.credential(app)
        url = self.backend.endpoint(name, GIT_SYNC, "http")
        deadline = time.monotonic() + SYNC_STARTING
        while url is not None:
            try:
                status, body = jsonhttp.call("POST", f"{url}/sync", SYNC_TIMEOUT, credential=credential)
            except jsonhttp.Unreachable as e:
                if e.refused and time.monotonic() < deadline:  # a pod just made: its git-sync is starting
                    time.sleep(0.1)
                    continue
                if not e.refused:
                    self.store.add_event(name, "sync", f"git-sync did not answer POST /sync ({e})")
                    return True
                return False
            body = body if isinstance(body, dict) else {}
            if status == 200 and "hash" in body:
                return True
            if status >= 400 and "error" in body:
                self.store.add_event(name, "sync", f"git-sync could not sync: {body['error']}")
                if status in (500, 502):
                    failed.append(str(body["error"]))
                return True
            return False  # no POST /sync here (upstream answers any path as its readiness probe)
        return False

    # rollbacks

    def rollback(self, app: App, target: str | None = None, wait: bool = True) -> tuple[Release, Release]:
        """Serve a release that served before, as a new release; returns (new, the one it serves again).

        Without ``target``: the newest release that served before the one serving now. With
        ``wait``, returns once the new release serves (raises Conflict if it fails)."""
        name = app.name
        if not app.manifest.hosted:
            raise InvalidInput(
                f"{name} syncs {app.manifest.source.clone_url}: roll back by moving "
                f"{app.manifest.source.ref} there"
            )
        releases = self.store.releases(name)
        serving = self.store.served(name)
        if target is None:
            chosen = _previous(releases, serving)
        else:
            chosen = _find_served(releases, target, name)
        # What pods are told to serve: the serving release, or one being deployed over it.
        deployed = self.repos.deployed(name) or (serving.revision if serving else None)
        if (chosen.revision, chosen.config) == (deployed, app.config):
            being = "serves" if serving and serving.revision == deployed else "is deploying"
            raise InvalidInput(f"{name} {being} {_label(releases, chosen)} already")
        original = _original(releases, chosen)
        with self.reconciler.lock:
            release = self.store.add_release(
                name, chosen.revision, message=f"rollback to v{original.number} ({original.message})",
                config=chosen.config,
            )
            self.store.use_config(name, chosen.config)  # a release is its code and its config
            self.store.add_event(name, "deploy", f"v{release.number}: rollback to v{original.number} ({chosen.revision[:12]})")
            pointed = self._point(app, release)
        release = self._fetch(app, release) if pointed else self.store.release(name, release.number)
        if not wait:
            return release, original
        outcome = self.await_outcome(name, release, lambda _: None, LIVE_TIMEOUT)
        return outcome.check(f"v{release.number} (rollback to v{original.number}) of {name} failed"), original

    # restarts of the control plane

    def recover(self, apps: list[App]) -> None:
        """At start: a release left pending by a control plane that stopped is cancelled, unless
        a pod (that outlived it) is still deploying or serving it, and the deploy ref points at
        what served last — so every app comes back with the release that served before."""
        pods = self.backend.pods(appspec.credentials(apps))
        for app in apps:
            if not app.manifest.hosted:
                continue
            runtime = pods[app.name].runtime if app.name in pods else RuntimeStatus()
            alive = {runtime.serving}
            if runtime.status in ("building", "starting"):
                alive.add(runtime.target)
            keep: str | None = None
            for r in self.store.releases(app.name):
                if r.status != st.PENDING:
                    continue
                if r.revision in alive and keep is None:
                    keep = r.revision
                else:
                    self.reconciler.end_release(app, r, st.CANCELLED, "the control plane stopped before it served")
            if keep is None:
                served = self.store.served(app.name)
                wanted = served.revision if served else None
                if wanted is not None and not self.repos.has_commit(app.name, wanted):
                    wanted = None  # its repository was lost: nothing to serve until a push
                if served is not None and app.config != served.config:
                    self.store.use_config(app.name, served.config)
            else:
                wanted = keep  # still being deployed by a pod that outlived the control plane
            if self.repos.deployed(app.name) != wanted:
                self.repos.deploy(app.name, wanted)


def _previous(releases: list[Release], serving: Release | None) -> Release:
    """The newest release that served before the one serving now, with another revision."""
    if serving is None:
        raise InvalidInput("nothing serves yet, so there is nothing to roll back from")
    for r in releases:
        if r.number < serving.number and r.status in st.SERVED and (r.revision, r.config) != (
            serving.revision,
            serving.config,
        ):
            return r
    raise InvalidInput(f"no release served before v{serving.number} (with other code or config) to roll back to")


def _find_served(releases: list[Release], target: str, app: str) -> Release:
    """A release by number (``3``, ``v3``) or commit (7+ hex digits) that served."""
    text = target.strip().lower()
    number = _RELEASE_NUMBER.fullmatch(text)
    if number:  # compared as text: int() refuses numbers of over 4300 digits
        digits = number.group(1).lstrip("0") or "0"
        found = [r for r in releases if str(r.number) == digits]
        if not found:
            raise RevisionNotFound(f"{app} has no release v{digits}")
        release = found[0]
        if release.status not in st.SERVED:
            raise InvalidInput(f"v{release.number} of {app} never served ({release.status}); pick one that did")
        return release
    if len(text) >= 7 and all(c in "0123456789abcdef" for c in text):
        matching = [r for r in releases if r.revision.startswith(text)]
        if not matching:
            raise RevisionNotFound(f"{app} has no release of revision {text}")
        served = [r for r in matching if r.status in st.SERVED]
        if not served:
            raise InvalidInput(f"revision {text} of {app} never served ({matching[0].status}); pick one that did")
        return served[0]
    raise InvalidInput(f"revision {target!r}: give a release number (v3) or a commit hash (7+ hex digits)")


def _original(releases: list[Release], release: Release) -> Release:
    """The first release of ``release``'s revision and config: what a rollback message names."""
    same = [r for r in releases if (r.revision, r.config) == (release.revision, release.config)]
    return min(same, key=lambda r: r.number)


def _label(releases: list[Release], release: Release) -> str:
    original = _original(releases, release)
    return f"v{original.number} ({release.revision[:12]})"


