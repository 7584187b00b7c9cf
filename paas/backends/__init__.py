"""Where pods run: ``local`` (child processes) or ``docker`` (containers)."""

from __future__ import annotations

from paas.backends.base import Backend
from paas.errors import BackendUnavailable
from paas.settings import Settings


def make_backend(settings: Settings) -> Backend:
    if settings.backend == "local":
        from paas.backends.local import LocalBackend

        return LocalBackend(settings.data_dir)
    raise BackendUnavailable(f"the {settings.backend!r} backend is not available in this version")
