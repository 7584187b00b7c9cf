"""What every backend offers, and the shape of what it reports."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Protocol

from paas.podspec import PodSpec


@dataclass
class ContainerStatus:
    name: str
    state: str  # running | restarting | exited | created
    restarts: int = 0
    started: float | None = None
    image: str = ""
    id: str = ""
    exit_code: int | None = None  # how it last exited, if it has
    role: str = ""


@dataclass
class PodStatus:
    app: str
    digest: str  # the PodSpec.digest the pod was created from
    containers: list[ContainerStatus] = field(default_factory=list)
    # The JSON files containers report (Container.reports), as read by the backend; what an
    # app process could have written, so it is shown, never trusted as a release's outcome.
    reports: dict[str, dict] = field(default_factory=dict)

    @property
    def runtime(self) -> dict:
        """The runtime's state, as it reported it."""
        return self.reports.get("runtime") or {}

    @property
    def sync_error(self) -> str | None:
        """git-sync's last error (its --error-file), if the last sync failed."""
        error = self.reports.get("sync_error")
        if not error:
            return None
        return ": ".join(str(error[k]) for k in ("Msg", "Err") if error.get(k)) or "git-sync failed"

    @property
    def running(self) -> bool:
        return bool(self.containers) and all(c.state == "running" for c in self.containers)

    def matches(self, spec: PodSpec) -> bool:
        """Made from ``spec``, with each of its containers present and running."""
        names = {c.name for c in self.containers}
        return self.digest == spec.digest and self.running and all(c.name in names for c in spec.containers)

    def to_json(self) -> dict:
        return asdict(self)


class Backend(Protocol):
    name: str

    def apply(self, spec: PodSpec) -> str | None:
        """Make the pod match ``spec`` (create, replace or repair it); say what was done, if anything."""

    def remove(self, app: str) -> None:
        """Stop and delete the pod and everything it owns (volume, logs); no error if absent."""

    def pods(self) -> dict[str, PodStatus]:
        """Every pod this backend runs, by app name: the actual state the reconciler compares."""

    def logs(self, app: str, follow: bool = False, tail: int = 200) -> Iterator[str]:
        """The pod's output, one line per item, each prefixed by its container's name."""

    def sync_url(self, app: str) -> str | None:
        """Where the pod's sync container answers HTTP (``POST /sync``), if it runs."""

    def close(self) -> None:
        """Release the backend; a backend whose pods die with the control plane stops them."""
