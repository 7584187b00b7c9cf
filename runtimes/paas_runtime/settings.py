"""The supervisor's parameters, read from the environment (the runtime contract)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import credential, live
from .live import Live

DEFAULT_APP_DIR = "/workspace/current"

#: Every variable the supervisor itself reads; all others belong to the app.
CONTRACT_VARS = (
    "PORT",
    "PAAS_BIND",
    "PAAS_APP_DIR",
    "PAAS_RUN",
    "PAAS_HEALTHCHECK",
    "PAAS_HEALTH_TIMEOUT",
    "PAAS_RUNTIME",
    "PAAS_CACHE_DIR",
    "PAAS_STATUS_BIND",
    "PAAS_STATUS_TOKEN_FILE",
    "PAAS_SETTINGS",
    "PAAS_SETTINGS_SOURCE",
    "PAAS_SETTINGS_FILE",
    "PAAS_VOLUME_LINKS",
)


class ConfigError(Exception):
    """The environment does not describe a runnable supervisor; carries every problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Settings:
    port: int
    app_dir: Path
    runtime: str | None
    cache_dir: Path
    #: Where the status endpoint listens (HOST:PORT); empty: nowhere.
    status_bind: str
    #: The settings the control plane may change while the app runs (see `live`): the ones
    #: given in the environment, or the newer ones a previous run kept in `settings_file`.
    live: Live = field(default_factory=Live)
    settings_file: Path | None = None
    app_env: dict[str, str] = field(default_factory=dict)
    #: The address the public port listens on ("" for all of them).
    host: str = ""
    #: Volumes linked into every revision: path in the revision -> the volume's directory.
    volume_links: dict[str, str] = field(default_factory=dict)
    #: The pod's credential, which the status endpoint's callers must send; None: no
    #: credential, so the endpoint takes no settings (`paas_runtime.credential`).
    secret: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], runtimes: tuple[str, ...]) -> Settings:
        """Parse ``environ``; ``runtimes`` are the names ``PAAS_RUNTIME`` may take."""
        problems: list[str] = []

        port = _parse_port(environ.get("PORT", ""), problems)
        host = _parse_bind(environ.get("PAAS_BIND", ""), port, problems)
        # Keep the link path as given: resolving it would pin one revision.
        app_dir = Path(os.path.abspath(environ.get("PAAS_APP_DIR") or DEFAULT_APP_DIR))
        run = environ.get("PAAS_RUN", "").strip() or None

        healthcheck = environ.get("PAAS_HEALTHCHECK", "").strip() or "/"
        if not healthcheck.startswith("/"):
            healthcheck = "/" + healthcheck

        health_timeout = 30.0
        raw_timeout = environ.get("PAAS_HEALTH_TIMEOUT", "").strip()
        if raw_timeout:
            try:
                health_timeout = float(raw_timeout)
            except ValueError:
                health_timeout = -1.0
            if health_timeout <= 0:
                problems.append(
                    f"PAAS_HEALTH_TIMEOUT: must be a positive number of seconds, got {raw_timeout!r}"
                )

        runtime = environ.get("PAAS_RUNTIME", "").strip().lower() or None
        if runtime is not None and runtime not in runtimes:
            problems.append(f"PAAS_RUNTIME: must be one of {', '.join(runtimes)} or empty")

        cache_dir = Path(environ.get("PAAS_CACHE_DIR") or app_dir.parent / ".cache")
        status_bind = environ.get("PAAS_STATUS_BIND", "").strip()
        if status_bind and not status_bind.rpartition(":")[2].isdigit():
            problems.append(f"PAAS_STATUS_BIND: must be HOST:PORT, got {status_bind!r}")

        secret = None
        token_file = environ.get("PAAS_STATUS_TOKEN_FILE", "").strip()
        if token_file:
            try:
                secret = credential.read(token_file)
            except credential.CredentialError as e:
                problems.append(f"PAAS_STATUS_TOKEN_FILE: {e}")

        initial = Live(run=run, healthcheck=healthcheck, health_timeout=health_timeout)
        if environ.get("PAAS_SETTINGS", "").strip():
            try:
                initial = live.parse(json.loads(environ["PAAS_SETTINGS"]))
            except (ValueError, TypeError) as e:
                problems.append(f"PAAS_SETTINGS: {e}")
        source = environ.get("PAAS_SETTINGS_SOURCE", "").strip()
        if source:  # the same JSON in a file: a mounted Secret, so config values stay out of the env
            try:
                initial = live.parse(json.loads(Path(source).read_text(encoding="utf-8")))
            except OSError as e:
                problems.append(f"PAAS_SETTINGS_SOURCE: cannot read {source}: {e.strerror}")
            except (ValueError, TypeError) as e:
                problems.append(f"PAAS_SETTINGS_SOURCE: {e}")
        raw_file = environ.get("PAAS_SETTINGS_FILE", "").strip()
        settings_file = Path(raw_file).absolute() if raw_file else None
        links: dict[str, str] = {}
        if environ.get("PAAS_VOLUME_LINKS", "").strip():
            try:
                names = json.loads(environ["PAAS_VOLUME_LINKS"])
                links = {str(path): environ[str(var)] for path, var in names.items()}
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                problems.append(f"PAAS_VOLUME_LINKS: must map paths to PAAS_VOLUME_* variables that are set ({e})")

        if problems:
            raise ConfigError(problems)
        assert port is not None
        kept = live.load(settings_file) if settings_file else None
        return cls(
            port=port,
            app_dir=app_dir,
            runtime=runtime,
            cache_dir=cache_dir.absolute(),
            status_bind=status_bind,
            live=live.newest(initial, kept),
            settings_file=settings_file,
            app_env={k: v for k, v in environ.items() if k not in CONTRACT_VARS},
            host=host,
            volume_links=links,
            secret=secret,
        )


def _parse_port(raw: str, problems: list[str]) -> int | None:
    raw = raw.strip()
    if not raw:
        problems.append("PORT: required (the port the app is served on)")
        return None
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        problems.append(f"PORT: must be a TCP port number, got {raw!r}")
        return None
    return int(raw)


def _parse_bind(raw: str, port: int | None, problems: list[str]) -> str:
    """The host of ``PAAS_BIND`` (``HOST:PORT``, the port being ``PORT``); "" when unset."""
    raw = raw.strip()
    if not raw:
        return ""
    host, _, bound = raw.rpartition(":")
    host = host.strip("[]")
    if not host or not bound.isdigit() or (port is not None and int(bound) != port):
        problems.append(f"PAAS_BIND: must be HOST:PORT with PORT's value as the port, got {raw!r}")
    return "" if host in ("0.0.0.0", "::") else host
