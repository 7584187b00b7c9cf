"""How an app is, for a person: one state word, what serves, what was tried last and why
it failed, built from the store (the truth about releases) and the reconciler's snapshot of
its pod (what runs)."""

from __future__ import annotations

import re

from paas import runtime_status
from paas import store as st
from paas.backends.base import PodStatus
from paas.podmodel import SIDECAR
from paas.store import App, Event, Release

# The state words, in the order a person reads them.
STATES = (
    "pending",  # stored; its pod doesn't run yet
    "starting",  # its pod's containers are starting
    "restarting",  # a container of its pod exited and is being restarted
    "waiting for a push",  # a hosted app that was never pushed
    "syncing",  # git-sync hasn't fetched the remote repository yet
    "deploying",  # a release is being built or started
    "serving",  # a release serves
    "failed",  # nothing serves: the latest release failed
    "error",  # nothing serves: git-sync can't fetch (its reason is shown)
)


def state(app: App, pod: PodStatus | None, releases: list[Release]) -> str:
    if pod is None:
        return "pending"
    runtime = pod.runtime
    latest = releases[0] if releases else None
    building = runtime.status in ("building", "starting")
    deploying = building or (latest is not None and latest.status == st.PENDING)
    if runtime.serving:
        return "deploying" if deploying else "serving"
    if not pod.running:
        return "starting" if all(c.restarts == 0 for c in pod.containers) else "restarting"
    if app.manifest.hosted and not releases:
        return "waiting for a push"
    if building:
        return "deploying"
    if latest is not None and latest.status == st.FAILED:
        return "failed"
    if pod.sync_error:
        return "error"
    if runtime.status == "failed":
        return "failed"
    if runtime.events and runtime.events[-1].event == "crashed":
        return "restarting"
    return "deploying" if deploying else "syncing"


def describe(app: App, pod: PodStatus | None, releases: list[Release], events: list[Event],
             urls: list[str]) -> dict:
    """The app as the API shows it (``paas status``, ``paas list``, the console). ``urls``:
    where it is served, best first; the last is its own port (``url``)."""
    runtime = pod.runtime if pod else runtime_status.RuntimeStatus()
    serving = next((r for r in releases if r.status == st.LIVE), None)
    latest = releases[0] if releases else None
    failure = next((r for r in releases if r.status == st.FAILED), None)
    if failure is not None and serving is not None and failure.number < serving.number:
        failure = None  # a later release served: that failure is history
    detected = runtime.runtime if app.manifest.runtime is None else None
    return app.to_json() | {
        "url": urls[-1],
        "urls": urls,
        "state": state(app, pod, releases),
        "runtime": app.manifest.runtime or detected,
        "runtime_detected": app.manifest.runtime is None and detected is not None,
        "serving": serving.to_json() if serving else None,
        "latest": latest.to_json() if latest else None,
        "revision": serving.revision if serving and runtime.serving == serving.revision else None,
        "traffic": runtime.traffic,
        # Crashes of the app's own process, which the runtime restarted (the container ran on).
        "crashes": runtime.restarts,
        "last_crash": next((e.message for e in reversed(runtime.events) if e.event == "crashed"), None),
        "instances": [i.model_dump() for i in runtime.instances],
        "volumes": [
            {"name": name, "path": path, "bytes": runtime.volumes.get(name)}
            for name, path in sorted(app.manifest.volumes.items())
        ],
        "sidecars": [
            {"name": c.name, "from_platform": c.platform, "state": c.state}
            for c in (pod.containers if pod else [])
            if c.role == SIDECAR
        ],
        "last_failure": failure.to_json() if failure else None,
        # What the runtime said while deploying the latest release (its push's `paas:` lines).
        "deploy_steps": [s.model_dump(include={"text", "at"}) for s in runtime.steps
                         if latest is not None and s.revision == latest.revision],
        "sync_error": pod.sync_error if pod else None,
        "containers": [c.__dict__ for c in pod.containers] if pod else [],
        "events": [e.to_json() for e in events],
    }


# A line that ends a Python traceback (`RuntimeError: oops`) or a Node one (`Error: …`).
_EXCEPTION = re.compile(r"^\s*([A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)|Error)\b.*")


def excerpt(lines: list[str], keep: int = 12) -> list[str]:
    """The last ``keep`` lines of a failure's output, led by the app's last exception (and the
    frame that raised it) when that came earlier: what a person needs to read first."""
    tail = lines[-keep:]
    raised = next((i for i in range(len(lines) - 1, -1, -1) if _EXCEPTION.match(lines[i])), None)
    if raised is not None and raised < len(lines) - keep:
        return [*lines[max(0, raised - 2) : raised + 1], "…", *tail]
    return tail
