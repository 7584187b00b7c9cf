"""The optional sidecars, one declaration each: what it needs from the pod.

A sidecar lives in its own top-level folder (``sidecar-<name>/``: package, console script,
Dockerfile, README); the control plane knows it only through this declaration — its
image and command, the ports it listens on (and the variable that tells it where), the
pod volumes it mounts, whether it must see the pod's processes (a shared PID namespace),
how to tell it is ready, and whether it serves control endpoints that want the pod's
credential (the variable that tells it where the credential's file is). ``paas.podspec`` turns a declaration into a container.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from paas import __version__
from paas.podmodel import Mount, Port, Readiness, Status


@dataclass(frozen=True)
class SidecarKind:
    name: str
    description: str
    image: str
    command: tuple[str, ...]  # the image's entrypoint; also a console script of this package
    ports: tuple[Port, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    share_pid: Callable[[Any], bool] = lambda app: False  # must it see every process of the pod?
    readiness: Readiness | None = None
    status: Status | None = None
    # Where it reaches another container's port: variable -> (container, port name).
    peers: dict[str, tuple[str, str]] = field(default_factory=dict)
    # The runtime's port this sidecar stands in front of: the sidecar's first port takes over
    # its number and publication, and the runtime's moves inside the pod.
    fronts: str | None = None
    # What the app spec makes of it: more variables, and secret volumes (name -> files).
    settings: Callable[[Any], dict[str, str]] = lambda app: {}
    secrets: Callable[[Any], dict[str, dict[str, str]]] = lambda app: {}
    # It serves control endpoints: the pod's credential is mounted into it and this variable
    # names its file (the sidecar then asks callers for it).
    credential_env: str | None = None


TOPZ, TOPZ_PORT = "topz", 8077
CONFIG, CONFIG_PORT = "config", 8076
CONFIG_DIR = "/workspace/config"
HTTPS = "https"
TLS_DIR = "/etc/paas/tls"


def _tls_files(app: Any) -> dict[str, dict[str, str]]:
    """The https sidecar's secret volume: the platform CA's pair, and the added one beside it."""
    if not app.tls:
        return {}
    files = {"tls.crt": app.tls.certificate, "tls.key": app.tls.key}
    if app.tls_added:
        files |= {"added.crt": app.tls_added.certificate, "added.key": app.tls_added.key}
    return {"tls": files}


REGISTRY: dict[str, SidecarKind] = {
    TOPZ: SidecarKind(
        name=TOPZ,
        description="the pod's processes at /topz (text, or JSON)",
        image=f"paas-topz:{__version__}",
        command=("paas-topz",),
        ports=(Port("http", TOPZ_PORT, bind_env="TOPZ_ADDR"),),
        share_pid=lambda app: True,
        readiness=Readiness("http", "/healthz"),
        credential_env="TOPZ_TOKEN_FILE",  # /topz shows every command line of the pod
    ),
    CONFIG: SidecarKind(
        name=CONFIG,
        description="the app's config written to $PAAS_CONFIG_DIR, and the app told (restart, signal, webhook)",
        image=f"paas-config:{__version__}",
        command=("paas-config",),
        ports=(Port("http", CONFIG_PORT, bind_env="CONFIG_ADDR"),),
        env={"PAAS_CONFIG_DIR": CONFIG_DIR},
        mounts=(Mount("workspace", "/workspace"),),
        # To signal the app's main process it must see it.
        share_pid=lambda app: app.config_reload == "signal",
        readiness=Readiness("http", "/healthz"),
        status=Status("http", "/status"),
        peers={"CONFIG_RUNTIME": ("runtime", "status"), "CONFIG_APP": ("runtime", "http")},
        credential_env="CONFIG_TOKEN_FILE",  # also sent to the runtime's status endpoint
    ),
    HTTPS: SidecarKind(
        name=HTTPS,
        description="TLS in front of the app: its published port becomes HTTPS (plain HTTP stays on the router)",
        image=f"paas-https:{__version__}",
        command=("paas-https",),
        ports=(Port("https", 8443, bind_env="HTTPS_ADDR"),),
        # The platform CA's pair serves by default; an added one ("added.crt") the names it covers.
        env={"CERT_FILE": f"{TLS_DIR}/tls.crt", "KEY_FILE": f"{TLS_DIR}/tls.key", "CERT_DIR": TLS_DIR},
        mounts=(Mount("tls", TLS_DIR, read_only=True),),
        peers={"PROXY_ADDR": ("runtime", "http")},
        fronts="http",
        settings=lambda app: {
            "HTTPS_REDIRECT": "1" if app.https_redirect else "0",
            "HSTS_MAX_AGE": str(app.hsts),
            "HTTPS_REDIRECT_PORT": str(app.redirect_port or ""),
        },
        secrets=_tls_files,
    ),
}


def available() -> str:
    return ", ".join(sorted(REGISTRY))
