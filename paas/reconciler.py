"""The reconciler: compares what the store wants with what the backend runs, and mends it.

It is the only writer of release status after a deploy starts: it observes which revision
each pod's runtime serves (or failed) and records that, so views and the git server only
ever store intent.
"""

from __future__ import annotations

import logging
import threading

from paas import podspec, store
from paas.backends.base import Backend, PodStatus
from paas.errors import PaasError
from paas.store import Store

log = logging.getLogger("paas.reconciler")


class Reconciler:
    def __init__(self, store: Store, backend: Backend, control_plane_url: str, interval: float = 1.0) -> None:
        self.store, self.backend = store, backend
        self.control_plane_url = control_plane_url
        self.interval = interval
        # Held while changing desired or actual state, so a deletion and a pass never interleave.
        self.lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._restarts: dict[tuple[str, str], int] = {}
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

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.reconcile()
            except PaasError as e:
                log.warning("reconcile: %s", e.message)
            except Exception:  # the loop must outlive any one bad pass
                log.exception("reconcile pass failed")
            self._wake.wait(self.interval)
            self._wake.clear()

    def reconcile(self) -> None:
        with self.lock:
            desired = {app.name: podspec.build(app, self.control_plane_url) for app in self.store.list_apps()}
            actual = self.backend.pods()
            for name, spec in desired.items():
                pod = actual.get(name)
                if pod is None or not pod.matches(spec):
                    done = self.backend.apply(spec)
                    if done:
                        self.store.add_event(name, "pod", done)
                if pod is not None:
                    self._observe(pod)
            for name in actual.keys() - desired.keys():
                self.backend.remove(name)
                log.info("removed pod %s: its app is no longer stored", name)

    def _observe(self, pod: PodStatus) -> None:
        app = pod.app
        for c in pod.containers:
            seen = self._restarts.get((app, c.name), 0)
            if c.restarts > seen:
                self.store.add_event(
                    app, "restart", f"{c.name} exited and was restarted (restart {c.restarts})"
                )
            self._restarts[(app, c.name)] = c.restarts
        serving = pod.runtime.get("serving")
        failed = pod.runtime.get("failed") or {}
        releases = self.store.releases(app)
        if serving:
            current = next((r for r in releases if r.revision == serving), None)
            if current is None:
                current = self.store.add_release(app, serving, store.LIVE, "synced from the app's repository")
            elif current.status != store.LIVE:
                self.store.set_release_status(app, current.number, store.LIVE, current.message)
            for r in releases:
                if r.status == store.LIVE and r.number != current.number:
                    self.store.set_release_status(app, r.number, store.SUPERSEDED, r.message)
        if failed.get("revision") and failed["revision"] != serving:
            release = next((r for r in releases if r.revision == failed["revision"]), None)
            if release is not None and release.status == store.PENDING:
                reason = str(failed.get("reason") or "the new revision failed")[-8000:]
                self.store.set_release_status(app, release.number, store.FAILED, reason)
                self.store.add_event(
                    app, "deploy", f"release v{release.number} failed: the previous revision keeps serving"
                )
