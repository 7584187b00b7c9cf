"""Changing an app after it was created, without downtime: its config variables (`paas
config`), its manifest (`paas apply`), a restart (`paas restart`).

What the runtime can take live — the environment, the command, the health check, the config
and how the app reloads it, a restart — reaches the running pod as new live settings and
rolls out as a new instance beside the old one, health-gated; only what shapes the pod (its
sidecars, resources, port, runtime image, volumes, source) replaces it. Each operation waits
for its outcome and says it: a change that makes the app fail is undone, and what served
serves on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from paas import credentials, podspec
from paas import manifest as manifest_mod
from paas.backends.base import Backend
from paas.deploys import LIVE_TIMEOUT, Deploys
from paas.errors import Conflict, InvalidInput, InvalidManifest
from paas.manifest import Manifest
from paas.reconciler import Reconciler
from paas.sidecars import CONFIG
from paas.store import App, Store

MAX_VARS, MAX_VALUE = 500, 32 * 1024


@dataclass(frozen=True)
class Change:
    field: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Plan:
    """What `paas apply` would change, and how it rolls out."""

    changes: list[Change]
    live: bool  # the runtime takes it: a new instance beside the old one
    new_pod: bool  # the pod is replaced
    git_password: str = field(default="", repr=False)  # of the remote repository, to store with it

    @property
    def rollout(self) -> str:
        if self.new_pod:
            return "new pod"
        return "live" if self.live else "none"


def check_variables(changes: Any) -> dict[str, str | None]:
    """`{"NAME": "value", "OTHER": null}` (null unsets); raises InvalidInput listing every problem."""
    if not isinstance(changes, dict) or not changes:
        raise InvalidInput('send a JSON object of variables: {"NAME": "value"}, or null to unset one')
    problems, clean = [], {}
    for name, value in changes.items():
        if problem := manifest_mod.variable_name_problem(name):  # the manifest's `env` rules
            problems.append(problem)
        elif value is not None and (isinstance(value, dict | list) or len(str(value)) > MAX_VALUE):
            problems.append(f"{name} must be a string, number or boolean of at most 32 KiB, or null")
        elif value is not None and (problem := manifest_mod.text_problem(manifest_mod.env_str(value))):
            problems.append(f"{name}: its value {problem}")
        else:
            clean[name] = None if value is None else manifest_mod.env_str(value)
    if problems:
        raise InvalidInput(f"invalid config: {'; '.join(problems)}", problems)
    return clean


class Lifecycle:
    def __init__(self, store: Store, backend: Backend, reconciler: Reconciler, deploys: Deploys) -> None:
        self.store, self.backend, self.reconciler, self.deploys = store, backend, reconciler, deploys

    # config

    def config(self, app: App) -> dict[str, Any]:
        return {"app": app.name, "version": app.config, "vars": self.store.config(app.name, app.config),
                "reload": app.manifest.config.reload}

    def set_config(self, app: App, changes: dict[str, str | None]) -> dict[str, Any]:
        """Store the next config version and roll it out: as a release of the revision that
        serves (rolled back like a code release); raises Conflict if the app fails with it."""
        with self.reconciler.lock:
            current = self.store.config(app.name, app.config)
            wanted = {k: v for k, v in (current | changes).items() if v is not None}
            if wanted == current:
                return self.config(app) | {"release": None, "changed": []}
            if len(wanted) > MAX_VARS:
                raise InvalidInput(f"an app has at most {MAX_VARS} config variables")
            version = self.store.set_config(app.name, wanted)
            summary = _summary(current, wanted)
            self.store.add_event(app.name, "config", f"config v{version}: {summary}")  # names only, never values
            serving = self.store.served(app.name)
            release = None
            if serving is not None:
                release = self.store.add_release(app.name, serving.revision, message=f"config: {summary}", config=version)
        self.reconciler.kick()
        app = self.store.get_app(app.name)
        if release is not None:
            outcome = self.deploys.await_outcome(app.name, release, lambda _: None, LIVE_TIMEOUT)
            release = outcome.check(f"{app.name} failed with config v{version}")
        return self.config(self.store.get_app(app.name)) | {
            "release": release.to_json() if release else None,
            "changed": sorted(k for k in wanted.keys() | current.keys() if wanted.get(k) != current.get(k)),
        }

    # restart

    def restart(self, app: App, hard: bool = False) -> dict[str, Any]:
        """A new instance of what serves, health-gated (``hard``: a new pod); Conflict, and
        nothing touched, when the app has never served, and Conflict when nothing serves after."""
        if self.store.served(app.name) is None:
            raise Conflict(f"{app.name} has never served, so there is nothing to restart: push to it first")
        began = time.monotonic()
        if hard:
            self.backend.recreate(app.name)
            self.store.add_event(app.name, "restart", "pod recreated (paas restart --hard)")
        else:
            generation = self.store.restarted(app.name)
            self.store.add_event(app.name, "restart", f"restart {generation} asked for (paas restart)")
        if hard:  # a pass after the old pod went, so the old pod's state isn't taken for the new one's
            self.reconciler.wait_pass()
        else:
            self.reconciler.kick()
        app = self.store.get_app(app.name)
        wanted = podspec.settings(self.reconciler.spec(app))["version"]
        served = self._until_serving(app.name, wanted, since=time.time() - (time.monotonic() - began))
        if not served:
            raise Conflict(
                f"{app.name} did not serve within {LIVE_TIMEOUT:.0f} s of the restart: see `paas logs {app.name}`"
            )
        return {"restarted": app.name, "hard": hard, "seconds": round(time.monotonic() - began, 2), "serving": served}

    def _until_serving(self, name: str, settings: str, since: float) -> bool:
        """Wait until the pod serves with ``settings`` (True), or its runtime failed to since
        ``since`` (raises Conflict); False if nothing serves within the time."""
        deadline = time.monotonic() + LIVE_TIMEOUT
        with self.reconciler.watching():
            while time.monotonic() < deadline:
                pod = self.reconciler.pods().get(name)
                if pod is not None and pod.running:
                    runtime = pod.runtime
                    if runtime.serving and runtime.settings == settings:
                        return True
                    if runtime.failed is not None and runtime.failed.at >= since and runtime.received == settings:
                        keeps = "the old one keeps serving" if runtime.serving else "nothing serves"
                        raise Conflict(
                            f"the new instance of {name} failed ({runtime.failed.reason.splitlines()[0]}); {keeps}",
                            runtime.failed.reason.splitlines()[1:][-12:],
                        )
                    if not runtime.serving and not self.store.releases(name):
                        return False  # nothing to restart yet
                time.sleep(0.05)
        return False

    # apply

    def plan(self, app: App, new: Manifest, port: int, password: str | None = None) -> Plan:
        """What applying ``new`` (on ``port``; ``password``: its repository's, given apart from
        it) to ``app`` changes; raises on what it can't."""
        if new.name != app.name:
            raise InvalidManifest(f"the manifest names {new.name!r}, not {app.name!r}: apply it to its own app")
        if new.hosted != app.manifest.hosted:
            raise InvalidInput(
                f"{app.name} {'is deployed by push' if app.manifest.hosted else 'syncs a remote repository'}: "
                "an app can't switch between the two (delete it and create it again)"
            )
        git_password = credentials.password_for(new.source, password, app.manifest.source.repo, app.git_password)
        changed = App(app.name, new, port, app.deploy_token, app.created, git_password, app.config, app.generation)
        self.check(changed)
        before, after = self.reconciler.spec(app), self.reconciler.spec(changed)
        old_pod, new_pod = podspec.build(before, self.reconciler.platform), podspec.build(after, self.reconciler.platform)
        # The fields a stored manifest that no longer validates had wrong are gone from it.
        fixed = [Change("manifest", app.problem, "valid")] if app.problem else []
        # The password is no field of the manifest: its change is shown, never its value.
        secret = [] if git_password == app.git_password else [
            Change("source.password", "***" if app.git_password else None, "*** (new)" if git_password else None)]
        return Plan(
            changes=fixed + _diff(app.manifest.to_dict(), new.to_dict()) + secret,
            live=podspec.settings(before)["version"] != podspec.settings(after)["version"],
            # A stored manifest that no longer validated has had its pod left as it was.
            new_pod=old_pod.digest != new_pod.digest or bool(app.problem),
            git_password=git_password,
        )

    def check(self, app: App) -> None:
        """What a manifest can't ask for given the platform (a reload mode without its sidecar)."""
        spec = self.reconciler.spec(app)
        if spec.config_reload in ("signal", "webhook") and not spec.has(CONFIG):
            raise InvalidManifest(
                f"config.reload: {spec.config_reload} needs the config sidecar: add `sidecars: [config]`",
                [f"config.reload: {spec.config_reload} needs the config sidecar"],
            )

    def apply(self, app: App, new: Manifest, port: int, password: str | None = None) -> dict[str, Any]:
        """Store a changed manifest and roll it out; a live change the app fails with is undone."""
        plan = self.plan(app, new, port, password)
        if not plan.changes:
            return {"changes": [], "rollout": "none"}
        began = time.time()
        with self.reconciler.lock:
            self.store.update_app(app.name, new, port, plan.git_password)
            fields = ", ".join(c.field for c in plan.changes)
            self.store.add_event(app.name, "apply", f"manifest changed ({fields}): {plan.rollout}")
        self.reconciler.kick()
        changed = self.store.get_app(app.name)
        if plan.live and not plan.new_pod:
            wanted = podspec.settings(self.reconciler.spec(changed))["version"]
            try:
                self._until_serving(app.name, wanted, since=began)
            except Conflict:
                with self.reconciler.lock:
                    self.store.update_app(app.name, app.manifest, app.port, app.git_password)
                    self.store.add_event(app.name, "apply", "the change was undone: the new instance failed")
                self.reconciler.kick()
                raise
        return {"changes": [c.__dict__ for c in plan.changes], "rollout": plan.rollout}


def _summary(old: dict[str, str], new: dict[str, str]) -> str:
    """`set A, B; unset C`: the names that changed, never their values."""
    changed = sorted(k for k in new if old.get(k) != new[k])
    removed = sorted(k for k in old if k not in new)
    parts = ([f"set {', '.join(changed)}"] if changed else []) + ([f"unset {', '.join(removed)}"] if removed else [])
    return "; ".join(parts)


def _diff(old: Any, new: Any, path: str = "") -> list[Change]:
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[Change] = []
        for key in sorted(old.keys() | new.keys()):
            found += _diff(old.get(key), new.get(key), f"{path}.{key}" if path else key)
        return found
    return [] if old == new else [Change(path, old, new)]

