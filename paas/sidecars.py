"""The optional sidecars, one declaration each: what it needs from the pod.

A sidecar lives in its own top-level folder (``sidecar-<name>/``: package, console script,
Dockerfile, README); the control plane knows it only through this declaration — its
image and command, the ports it listens on (and the variable that tells it where), the
pod volumes it mounts, whether it must see the pod's processes (a shared PID namespace),
and how to tell it is ready. ``paas.podspec`` turns a declaration into a container.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from paas import __version__
from paas.podmodel import Mount, Port, Readiness


@dataclass(frozen=True)
class SidecarKind:
    name: str
    description: str
    image: str
    command: tuple[str, ...]  # the image's entrypoint; also a console script of this package
    ports: tuple[Port, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    share_pid: bool = False  # must see every process of the pod
    readiness: Readiness | None = None


TOPZ, TOPZ_PORT = "topz", 8077

REGISTRY: dict[str, SidecarKind] = {
    TOPZ: SidecarKind(
        name=TOPZ,
        description="the pod's processes at /topz (text, or JSON)",
        image=f"paas-topz:{__version__}",
        command=("paas-topz",),
        ports=(Port("http", TOPZ_PORT, bind_env="TOPZ_ADDR"),),
        share_pid=True,
        readiness=Readiness("http", "/healthz"),
    ),
}


def available() -> str:
    return ", ".join(sorted(REGISTRY))
