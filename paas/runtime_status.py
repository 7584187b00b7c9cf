"""The runtime supervisor's status, as the control plane reads it from its status endpoint
(`GET /status` on the runtime's status port): the typed twin of `paas_runtime.state.State`.

Parsed leniently — what a pod reports is only ever shown or compared with what the control
plane knows, and a garbled or missing answer is an empty status, not an error.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class Failure(BaseModel):
    model_config = ConfigDict(extra="ignore")

    revision: str = ""
    reason: str = ""
    at: float = 0.0
    config_version: int = 0


class Step(BaseModel):
    model_config = ConfigDict(extra="ignore")

    revision: str = ""
    text: str = ""
    at: float = 0.0


class Event(BaseModel):
    model_config = ConfigDict(extra="ignore")

    event: str = ""
    revision: str = ""
    message: str = ""
    at: float = 0.0


class Instance(BaseModel):
    model_config = ConfigDict(extra="ignore")

    pid: int = 0
    revision: str = ""
    state: str = ""  # starting | serving | draining
    traffic: str | None = None
    port: int = 0
    main_pid: int = 0
    settings: str = ""
    config_version: int = 0


class RuntimeStatus(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: str = "waiting"  # waiting | building | starting | serving | failed
    serving: str | None = None
    target: str | None = None
    link: str | None = None  # the revision git-sync's link points at now (older runtimes: not said)
    failed: Failure | None = None
    restarts: int = 0
    runtime: str | None = None
    traffic: str | None = None
    events: list[Event] = []
    steps: list[Step] = []
    instances: list[Instance] = []
    settings: str = ""  # the version of the live settings what serves runs with
    received: str = ""  # the version of the live settings last given to it
    config_version: int = 0  # the config version what serves runs with
    volumes: dict[str, int] = {}  # name -> bytes

    @property
    def settled(self) -> bool:
        """What serves is what git-sync checked out, and no switch is under way: only then does
        serving a revision tell which release serves (quick deploys may move the link twice)."""
        if self.link is None:
            return True
        return self.link == self.serving and self.target in (None, self.serving)


def parse(data: Any) -> RuntimeStatus:
    try:
        return RuntimeStatus.model_validate(data if isinstance(data, dict) else {})
    except ValidationError:
        return RuntimeStatus()
