"""Where pods run: ``local`` (child processes) or ``docker`` (containers)."""

from __future__ import annotations

from paas.backends.base import Backend
from paas.errors import BackendUnavailable
from paas.settings import Settings, instance_id


def make_backend(settings: Settings) -> Backend:
    if settings.backend == "local":
        from paas.backends.local import LocalBackend

        return LocalBackend(settings.data_dir, settings.app_address)
    if settings.backend == "docker":
        from paas.backends.docker.pods import DockerBackend

        return DockerBackend(instance_id(settings.data_dir), settings.app_address)
    raise BackendUnavailable(f"the {settings.backend!r} backend is not available in this version")
