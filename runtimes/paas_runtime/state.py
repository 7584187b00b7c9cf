"""What the supervisor is doing and why: the status the control plane reads from the
status endpoint (`paas_runtime.status_server`), typed on its side by
`paas.runtime_status`. Kept in the supervisor's memory, not in a file the app (which
shares the volume) could write.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Phase = Literal["waiting", "building", "starting", "serving", "failed"]
EventKind = Literal["deployed", "failed", "crashed", "restarted"]
Traffic = Literal["direct", "proxied"]

#: Events kept in the file, oldest dropped first.
MAX_EVENTS = 20
#: Steps kept of the deploy in progress (or the last one).
MAX_STEPS = 50


@dataclass
class Failure:
    revision: str
    reason: str
    at: float = field(default_factory=time.time)
    #: The config version it failed with (a new config can fail a revision that served).
    config_version: int = 0


@dataclass
class Event:
    """Something a user may want to know happened: a deploy, a failure, a crash, a restart."""

    event: EventKind
    revision: str
    message: str
    at: float = field(default_factory=time.time)


@dataclass
class Step:
    """One thing a deploy did (chose a runtime, installed dependencies, started, got healthy)."""

    revision: str
    text: str
    at: float = field(default_factory=time.time)


@dataclass
class State:
    """``status`` describes the revision the link points at (``target``).

    ``serving`` is the revision that answers on the public port right now
    (None while nothing does); it differs from ``target`` while a new revision
    builds or starts, and after one failed (then ``failed`` says why).
    """

    status: Phase = "waiting"
    serving: str | None = None
    target: str | None = None
    failed: Failure | None = None
    restarts: int = 0
    #: The runtime (python, node, static) of the serving revision.
    runtime: str | None = None
    #: How the public port reaches it: "direct" (the app accepts on it) or "proxied".
    traffic: Traffic | None = None
    events: list[Event] = field(default_factory=list)
    #: What the newest deploy did so far, oldest first.
    steps: list[Step] = field(default_factory=list)
    #: The live settings (their version) and the config version of what serves.
    settings: str = ""
    config_version: int = 0
    #: The version of the live settings last received (`PUT /settings`), served or not.
    received: str = ""
    updated: float = field(default_factory=time.time)


class Status:
    """The supervisor's state, changed by `update`, `step` and `event`."""

    def __init__(self) -> None:
        self.state = State()

    def update(self, **changes: object) -> None:
        """Apply ``changes`` to the state."""
        for name, value in changes.items():
            if not hasattr(self.state, name):
                raise AttributeError(name)
            setattr(self.state, name, value)
        self.state.updated = time.time()

    def step(self, revision: str, text: str) -> None:
        """Record a step of the deploy of ``revision`` (a new revision's first step starts afresh)."""
        kept = [s for s in self.state.steps if s.revision == revision]
        self.state.steps = [*kept, Step(revision, text)][-MAX_STEPS:]
        self.update()

    def event(self, kind: EventKind, revision: str, message: str, **changes: object) -> None:
        """Record an event (and apply ``changes``) at once."""
        self.state.events = [*self.state.events, Event(kind, revision, message)][-MAX_EVENTS:]
        self.update(**changes)

    def to_json(self) -> dict[str, Any]:
        return asdict(self.state)
