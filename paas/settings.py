"""Control plane settings, layered: defaults -> PAAS_* environment -> explicit overrides.

Read in the app factory (never at import time) so tests and `paas up` can pass their own.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from paas import sidecars
from paas.errors import InvalidInput
from paas.names import is_host_name

BACKENDS = ("local", "docker", "kubernetes")
SYNC_TRIGGERS = ("auto", "http", "signal")


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "paas"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=default_data_dir)
    backend: str = "local"
    host: str = "127.0.0.1"
    port: int = 8000
    # Address the apps' public ports listen on (are published on); empty: the same as ``host``.
    apps_host: str = ""
    token: str = ""
    # How pods reach the control plane's git server; derived from host/port when empty.
    internal_url: str = ""
    reconcile_interval: float = 1.0
    # Sidecars added to every app's pod (comma-separated names); an app may decline one.
    default_sidecars: str = ""
    # The git-sync pods run: an image (docker) and a command (local) — ours, or upstream's.
    git_sync_image: str = ""
    git_sync_command: str = "git-sync"
    # How a push reaches a pod's git-sync: `http` (POST /sync), `signal` (SIGHUP through the
    # backend, what upstream's git-sync understands) or `auto` (POST /sync, else the signal).
    sync_trigger: str = "auto"
    # The kubernetes backend (and `paas export`): the namespace of its objects, the registry
    # path images are pulled from (`registry.example.com/team/`), a development mode where
    # pods use the node's network, and how long a pod's containers get to stop.
    kube_namespace: str = "paas"
    kube_image_prefix: str = ""
    kube_host_network: int = 0
    kube_grace_period: int = 30
    # The router (`paas up` starts it): every app at http://APP.<domain>:<router_port>/ and,
    # with the https sidecar, https://APP.<domain>:<router_tls_port>/; a port of 0: no router.
    domain: str = "localhost"
    router_port: int = 8080
    router_tls_port: int = 8443
    # The local backend run as root: each app's processes as a uid of its own from this range
    # (FIRST-LAST), or `off` to run apps as root (they can then read the platform's secrets).
    app_uids: str = "200000-299999"
    # The local pod host's socket (`paas up` sets it for its API worker; empty: pods in-process).
    pod_host: str = ""
    # Room a deploy needs on the data directory (a checkout, a virtualenv, logs): with less
    # free, a push's release fails at once saying so, rather than hanging on a write.
    min_free_mb: int = 64

    @classmethod
    def load(cls, overrides: dict[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults, then ``PAAS_<FIELD>`` environment variables, then ``overrides``."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(f"PAAS_{f.name.upper()}") or (
                environ.get("PAAS_DATA") if f.name == "data_dir" else None
            )
            if raw:
                values[f.name] = raw
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        settings = cls(**_coerce(values))
        if settings.backend not in BACKENDS:
            raise InvalidSetting(f"unknown backend {settings.backend!r}: use one of {', '.join(BACKENDS)}")
        if settings.sync_trigger not in SYNC_TRIGGERS:
            raise InvalidSetting(
                f"PAAS_SYNC_TRIGGER: use one of {', '.join(SYNC_TRIGGERS)}, not {settings.sync_trigger!r}"
            )
        if not is_host_name(settings.domain):
            raise InvalidSetting(f"PAAS_DOMAIN: {settings.domain!r} is not a DNS name (such as localhost or example.com)")
        if settings.min_free_mb < 0:
            raise InvalidSetting(f"PAAS_MIN_FREE_MB: {settings.min_free_mb} is not a size in MB (0 turns the check off)")
        for name in ("router_port", "router_tls_port"):
            if not 0 <= getattr(settings, name) <= 65535:
                raise InvalidSetting(f"PAAS_{name.upper()}: {getattr(settings, name)} is not a port (0 turns it off)")
        parse_uids(settings.app_uids)  # a malformed range is one sentence here
        unknown = [name for name in settings.sidecars if name not in sidecars.REGISTRY]
        if unknown:
            raise InvalidSetting(
                f"PAAS_DEFAULT_SIDECARS: unknown sidecar {unknown[0]!r}; available: {sidecars.available()}"
            )
        return settings

    @property
    def sidecars(self) -> tuple[str, ...]:
        """The default sidecars, in order, each once."""
        names = [name.strip() for name in self.default_sidecars.split(",") if name.strip()]
        return tuple(dict.fromkeys(names))

    def with_token(self) -> Settings:
        """Return settings whose token is set: the configured one, else the one kept in the data dir."""
        if self.token:
            return self
        return replace(self, token=ensure_token(self.data_dir))

    @property
    def uids(self) -> range | None:
        """The uids apps run as on the local backend; None when they run as the control
        plane's own user (it isn't root, or PAAS_APP_UIDS=off)."""
        if os.geteuid() != 0:
            return None
        return parse_uids(self.app_uids)

    @property
    def app_address(self) -> str:
        """The address app ports listen on (loopback unless a setting says otherwise)."""
        return self.apps_host or self.host

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def pod_url(self) -> str:
        """The control plane's URL as seen from inside a pod."""
        if self.internal_url:
            return self.internal_url
        return f"http://host.docker.internal:{self.port}" if self.backend == "docker" else self.url


class InvalidSetting(InvalidInput):
    pass


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    types = {f.name: f.type for f in fields(Settings)}
    out: dict[str, Any] = {}
    for key, value in values.items():
        kind = types[key]
        try:
            if kind == "Path":
                out[key] = Path(value).expanduser()
            elif kind == "int":
                out[key] = int(value)
            elif kind == "float":
                out[key] = float(value)
            else:
                out[key] = str(value)
        except ValueError:
            raise InvalidSetting(f"PAAS_{key.upper()}: {value!r} is not a {kind}") from None
    return out


def parse_uids(text: str) -> range | None:
    """``FIRST-LAST`` as a range of uids (None for ``off`` or nothing); raises InvalidSetting."""
    text = text.strip()
    if text.lower() in ("", "off", "0", "no", "false"):
        return None
    first, dash, last = text.partition("-")
    if not (dash and first.strip().isdigit() and last.strip().isdigit()):
        raise InvalidSetting(f"PAAS_APP_UIDS: {text!r} is not a range of uids such as 200000-299999 (or off)")
    low, high = int(first), int(last)
    if not 1000 <= low <= high < 2**32 - 1:
        raise InvalidSetting(f"PAAS_APP_UIDS: {text!r} must lie between 1000 and 4294967294, FIRST <= LAST")
    return range(low, high + 1)


def instance_id(data_dir: Path) -> str:
    """This installation's identity (kept in the data dir): it labels what it creates, so control
    planes sharing one Docker engine never touch each other's pods."""
    path = data_dir / "instance"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(secrets.token_hex(6) + "\n")
        tmp.replace(path)
    return path.read_text().strip()


def ensure_token(data_dir: Path) -> str:
    """The admin token kept in the data dir, generated (0600) on first start."""
    path = data_dir / "token"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token
