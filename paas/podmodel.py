"""The pod model: a backend-neutral description of a pod, shaped so that each backend
realises it directly — a Kubernetes Deployment's pod template is its rendering, Docker an
infra container with the others joined to its namespaces, the local backend a group of
processes.

A pod is containers sharing volumes and a network (and, if asked, a PID namespace). Each
container has a role (the pod's sync, its runtime, or a sidecar), an image and command,
an environment, named ports, mounts of the pod's volumes, resources, a readiness check and
what it reports (a status endpoint, JSON files). Nothing here names a particular
container: backends treat every container alike, and the control plane finds the sync
container or the runtime's status by role.

Ports are declared, not written into the env: a container names the variable through
which it is told the ``HOST:PORT`` to bind (``bind_env``), and each backend fills it in
as it realises the port — in a pod of its own network namespace every port is bound on
all addresses at its number (but one only the pod's own containers call, ``pod_only``, on
loopback); on a shared host network (the local backend) a published port is bound on the
address apps listen on and an internal one is remapped to a free loopback port.

Every control endpoint of a pod wants the pod's credential, a secret only the platform and
the pod hold: a secret volume of the pod's (files, like any other), mounted read-only into
the containers that serve such endpoints, each told the file's path by a variable of its
own. Backends realise it as any secret volume; the control plane sends the secret itself
(``Authorization: Bearer``) on every call to a pod.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

# Roles
SYNC, APP, SIDECAR = "sync", "runtime", "sidecar"
# Volume kinds: the pod's own (emptyDir), shared by every pod of the platform (a cache),
# secret files (a Kubernetes Secret; files copied in before start on Docker), or the app's
# persistent data (a PersistentVolumeClaim): kept when the pod is replaced, removed only
# with the app.
POD, SHARED, SECRET, PERSISTENT = "pod", "shared", "secret", "persistent"


@dataclass(frozen=True)
class Port:
    name: str
    number: int  # the port inside the pod's network namespace
    publish: bool = False  # reachable from outside the pod, at the same number
    bind_env: str | None = None  # the variable that tells the container HOST:PORT to bind
    number_env: str | None = None  # one that tells it the bare number (a backend moving the port sets both)
    # Called only by the pod's own containers (never by the control plane, a router or another
    # host): bound on loopback where the pod has a network namespace of its own (Docker; a
    # Kubernetes pod keeps it on every address when the kubelet probes it there).
    pod_only: bool = False


@dataclass(frozen=True)
class Volume:
    name: str
    kind: str = POD
    files: dict[str, str] = field(default_factory=dict, repr=False)  # a secret's: name -> content


@dataclass(frozen=True)
class Mount:
    volume: str
    path: str
    read_only: bool = False


@dataclass(frozen=True)
class Readiness:
    """Ready once ``GET path`` on the named port answers below 500."""

    port: str
    path: str = "/"


@dataclass(frozen=True)
class Status:
    """Where a container reports its state: JSON at ``GET path`` on the named port."""

    port: str
    path: str


@dataclass(frozen=True)
class Push:
    """A document the control plane keeps delivered to a running container (`PUT path` on the
    named port) — its live settings, an app's config — without replacing the pod: whenever
    the container's status (``key``) reports another version than ``version``."""

    port: str
    path: str
    body: dict
    version: str
    key: str
    # Where no control plane delivers it (an exported Deployment), the variable that names a
    # file the container reads the document from at start.
    source_env: str | None = None


@dataclass(frozen=True)
class Resources:
    memory: str | None = None  # docker's syntax: 256m, 1g
    cpus: float | None = None


@dataclass(frozen=True)
class Container:
    name: str
    role: str
    image: str
    command: tuple[str, ...]  # the image's entrypoint; also a console script of this package
    env: dict[str, str]
    ports: tuple[Port, ...] = ()
    mounts: tuple[Mount, ...] = ()
    resources: Resources | None = None  # limits, where a backend can
    readiness: Readiness | None = None
    status: Status | None = None
    # JSON files the container writes, name -> path (git-sync's --error-file); a backend
    # reads them into PodStatus.reports.
    reports: dict[str, str] = field(default_factory=dict)
    platform: bool = False  # a sidecar the platform added (PAAS_DEFAULT_SIDECARS)
    # Where the container reaches another one's port: variable -> (container, port name); a
    # backend sets it to HOST:PORT as seen from inside the pod.
    peers: dict[str, tuple[str, str]] = field(default_factory=dict)
    pushes: tuple[Push, ...] = ()
    # Variables whose value a push keeps current: a change of them alone doesn't replace the pod.
    live_env: tuple[str, ...] = ()


@dataclass(frozen=True)
class PodSpec:
    app: str
    containers: tuple[Container, ...]
    volumes: tuple[Volume, ...] = ()
    share_pid: bool = False
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """Changes whenever anything a backend realises changes, so a pod can be compared;
        what pushes keep current (and their variables) is left out, and the readiness check
        (the health check, which the runtime takes live; an orchestrator that probes it sees
        its own rendering change)."""
        shape = asdict(self)
        for container in shape["containers"]:
            container.pop("pushes")
            container.pop("readiness")
            for name in container["live_env"]:
                container["env"].pop(name, None)
        body = json.dumps(shape, sort_keys=True).encode()
        return hashlib.sha256(body).hexdigest()[:16]

    def role(self, role: str) -> Container | None:
        return next((c for c in self.containers if c.role == role), None)

    def volume(self, name: str) -> Volume:
        return next(v for v in self.volumes if v.name == name)

    @property
    def published(self) -> list[Port]:
        return [p for c in self.containers for p in c.ports if p.publish]


def to_json(spec: PodSpec) -> dict:
    """``spec`` as plain JSON values (secret files included: for a trusted channel only)."""
    return asdict(spec)


def from_json(data: dict) -> PodSpec:
    """The pod spec ``to_json`` gave; raises ValueError for anything else."""
    try:
        return _decode(PodSpec, data)
    except (TypeError, KeyError, AttributeError) as e:
        raise ValueError(f"not a pod spec: {e}") from None


def _decode(kind: Any, value: Any) -> Any:
    """``value`` (JSON) as an instance of the type ``kind``, dataclasses field by field."""
    if isinstance(kind, type) and is_dataclass(kind):
        hints = get_type_hints(kind)
        return kind(**{f.name: _decode(hints[f.name], value[f.name]) for f in fields(kind) if f.name in value})
    origin, args = get_origin(kind), get_args(kind)
    if origin in (UnionType, Union):
        if value is None:
            return None
        return _decode(next(a for a in args if a is not type(None)), value)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v) for v in value)
        return tuple(_decode(a, v) for a, v in zip(args, value, strict=True))
    if origin is dict:
        return {_decode(args[0], k): _decode(args[1], v) for k, v in value.items()}
    if kind in (str, int, float, bool) and not isinstance(value, kind):
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        raise TypeError(f"{value!r} is not a {kind.__name__}")
    return value
