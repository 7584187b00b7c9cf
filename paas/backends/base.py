"""What every backend offers, and the shape of what it reports."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Protocol

from paas import jsonhttp
from paas.podmodel import APP, PodSpec

if TYPE_CHECKING:
    from paas.runtime_status import RuntimeStatus

STATUS_TIMEOUT = 1.0


def read_status(url: str, credential: str | None) -> dict:
    """A container's status endpoint's JSON, asked with the pod's ``credential``; {} if it
    doesn't answer (yet) or answers something else: a status is shown and compared, never
    required."""
    try:
        status, data = jsonhttp.call("GET", url, STATUS_TIMEOUT, credential=credential)
    except jsonhttp.Unreachable:
        return {}
    return data if status == 200 and isinstance(data, dict) else {}


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
    platform: bool = False  # a sidecar the platform added


@dataclass
class PodStatus:
    app: str
    digest: str  # the PodSpec.digest the pod was created from
    containers: list[ContainerStatus] = field(default_factory=list)
    # What containers report, as read by the backend: their status endpoints (container name
    # -> JSON) and JSON files (report name -> JSON). Processes sharing a pod with the app
    # wrote them, so they are shown, never trusted as a release's outcome.
    statuses: dict[str, dict] = field(default_factory=dict)
    reports: dict[str, dict] = field(default_factory=dict)
    # Where the control plane (and the router beside it) reaches the pod's published ports when
    # that is not the address they are published on: the pod's own, seen from a control plane
    # that runs in a container of its own.
    address: str | None = None

    @cached_property
    def runtime(self) -> RuntimeStatus:
        """The runtime's status, as it reported it (parsed by the control plane; the pod host,
        which only passes statuses on, never imports the parser)."""
        from paas import runtime_status

        app = next((c.name for c in self.containers if c.role == APP), None)
        return runtime_status.parse(self.statuses.get(app) if app else None)

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
        return {k: v for k, v in asdict(self).items() if k != "runtime"}

    @classmethod
    def from_json(cls, data: dict) -> PodStatus:
        """The status ``to_json`` gave (from the pod host)."""
        containers = [ContainerStatus(**c) for c in data.get("containers", [])]
        return cls(data["app"], data["digest"], containers, data.get("statuses", {}), data.get("reports", {}),
                   data.get("address"))


class Backend(Protocol):
    name: str

    def apply(self, spec: PodSpec) -> str | None:
        """Make the pod match ``spec`` (create, replace or repair it); say what was done, if anything."""

    def remove(self, app: str) -> None:
        """Stop and delete the pod and everything it owns (volume, logs); no error if absent."""

    def pods(self, credentials: Mapping[str, str] | None = None) -> dict[str, PodStatus]:
        """Every pod this backend runs, by app name: the actual state the reconciler compares.
        ``credentials`` (app -> its pod credential, `appspec.credentials`) are sent to the
        pods' status endpoints; a pod with none reports no statuses."""

    def logs(self, app: str, follow: bool = False, tail: int = 200) -> Iterator[str]:
        """The pod's output, one line per item, each prefixed by its container's name."""

    def endpoint(self, app: str, container: str, port: str) -> str | None:
        """``http://HOST:PORT`` where the control plane reaches a container's named port, if
        the pod runs (git-sync's ``POST /sync``, a sidecar's API)."""

    def signal(self, app: str, container: str, signal: int) -> bool:
        """Send ``signal`` to a container's main process; whether it was running."""

    def recreate(self, app: str) -> None:
        """Replace the pod's containers (or processes) by new ones, keeping its volumes."""

    def close(self) -> None:
        """Release the backend; a backend whose pods die with the control plane stops them."""
