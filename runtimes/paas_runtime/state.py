"""The status file the control plane reads: what the supervisor is doing and why.

Written whole to a temporary file and renamed over the old one, so a reader
never sees half a document.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

Status = Literal["waiting", "building", "starting", "serving", "failed"]
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

    status: Status = "waiting"
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
    updated: float = field(default_factory=time.time)


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.state = State()

    def update(self, **changes: object) -> None:
        """Apply ``changes`` to the state and write it out."""
        for name, value in changes.items():
            if not hasattr(self.state, name):
                raise AttributeError(name)
            setattr(self.state, name, value)
        self.state.updated = time.time()
        self._write()

    def step(self, revision: str, text: str) -> None:
        """Record a step of the deploy of ``revision`` (a new revision's first step starts afresh)."""
        kept = [s for s in self.state.steps if s.revision == revision]
        self.state.steps = [*kept, Step(revision, text)][-MAX_STEPS:]
        self.update()

    def event(self, kind: EventKind, revision: str, message: str, **changes: object) -> None:
        """Record an event (and apply ``changes``) in one write."""
        self.state.events = [*self.state.events, Event(kind, revision, message)][-MAX_EVENTS:]
        self.update(**changes)

    def _write(self) -> None:
        data = json.dumps(asdict(self.state), indent=2) + "\n"
        tmp: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            os.fchmod(fd, 0o644)  # the control plane may read it as another user
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data)
            os.replace(tmp, self.path)
        except OSError as e:
            # The app keeps serving; only the control plane's view goes stale.
            log.warning("cannot write state file %s: %s", self.path, e)
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
