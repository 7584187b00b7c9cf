"""Settings the control plane changes while the app runs: the command, the health check, the
manifest's environment, the config variables and how the app takes them, the restart
generation. A change is rolled out as a new instance of the serving revision beside the old
one, health-gated like a new revision — or, for config variables the app reloads by itself
(`signal`, `webhook`, `none`), not at all: they reach new instances only.

They arrive as `PUT /settings` on the status endpoint, start from `PAAS_SETTINGS` (JSON) or
the contract's variables (`PAAS_RUN`, `PAAS_HEALTHCHECK`, …), and are kept in a file of the
pod's volume so a restarted supervisor resumes with the newest it was given (`issued`, the
control plane's clock, tells which is newest). The config values are secrets: the control
plane leaves them out of `PAAS_SETTINGS` (`withheld`: an environment shows in `docker
inspect` and in a Kubernetes pod), and the supervisor builds nothing until they arrive.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
RELOADS = ("restart", "signal", "webhook", "none")


@dataclass(frozen=True)
class Live:
    run: str | None = None
    healthcheck: str = "/"
    health_timeout: float = 30.0
    env: dict[str, str] = field(default_factory=dict)  # the manifest's
    config: dict[str, str] = field(default_factory=dict)  # the config variables (override env)
    config_version: int = 0
    config_reload: str = "restart"
    generation: int = 0
    version: str = ""  # names this set of settings (the control plane's digest)
    issued: float = 0.0
    withheld: bool = False  # the config values were left out: they come by PUT /settings

    def app_env(self) -> dict[str, str]:
        return self.env | self.config

    def restart_reason(self, new: Live) -> str | None:
        """Why ``new`` needs a new instance of the serving revision; None if it doesn't."""
        for name, what in (("run", "the command"), ("healthcheck", "the health check"),
                           ("health_timeout", "the health check's timeout"), ("env", "the environment"),
                           ("generation", "a restart")):
            if getattr(self, name) != getattr(new, name):
                return f"{what} changed" if name != "generation" else "a restart was asked for"
        if self.config != new.config and new.config_reload == "restart":
            return f"config v{new.config_version}"
        return None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse(data: Any) -> Live:
    """Settings from JSON; raises ValueError saying what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("settings must be a JSON object")
    known = {f for f in Live.__dataclass_fields__}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
    live = Live(**data)
    for name in ("env", "config"):
        value = getattr(live, name)
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ValueError(f"{name} must map names to strings")
    if live.config_reload not in RELOADS:
        raise ValueError(f"config_reload must be one of {', '.join(RELOADS)}")
    if not str(live.healthcheck).startswith("/") or float(live.health_timeout) <= 0:
        raise ValueError("healthcheck must be a path and health_timeout positive")
    return replace(live, run=live.run or None, health_timeout=float(live.health_timeout))


def newest(given: Live, kept: Live | None) -> Live:
    """The settings to start with: the newer of those ``given`` and those ``kept`` by an
    earlier run — and the kept ones when they are the given ones with their config values."""
    if kept is None or kept.withheld:
        return given
    if given.withheld and kept.version == given.version:
        return kept
    return max(given, kept, key=lambda c: c.issued)


def load(path: Path) -> Live | None:
    """The settings kept by an earlier run, if any (and readable)."""
    try:
        return parse(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as e:
        if not isinstance(e, FileNotFoundError):
            log.warning("ignoring the kept settings in %s: %s", path, e)
        return None


def save(path: Path, live: Live) -> None:
    """Keep ``live`` for a restart (written whole, then renamed over the old file)."""
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(live.to_json(), f)
        os.replace(tmp, path)
    except OSError as e:
        log.warning("cannot keep the settings in %s: %s", path, e)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
