"""Where pods run: ``local`` (child processes), ``docker`` (containers) or ``kubernetes`` (a
Deployment per app on a cluster)."""

from __future__ import annotations

from paas.backends.base import Backend
from paas.errors import BackendUnavailable
from paas.settings import Settings, instance_id


def make_backend(settings: Settings) -> Backend:
    if settings.backend == "local" and settings.pod_host:
        from pathlib import Path

        from paas.backends.podhost import PodHostClient

        return PodHostClient(Path(settings.pod_host), settings.data_dir)
    if settings.backend == "local":  # pods in this process (tests, and the pod host itself)
        from paas.backends.local import LocalBackend

        return LocalBackend(settings.data_dir, settings.app_address, settings.uids)
    if settings.backend == "docker":
        from paas.backends.docker.pods import DockerBackend

        return DockerBackend(instance_id(settings.data_dir), settings.app_address)
    if settings.backend == "kubernetes":
        from paas.backends.kubernetes.pods import KubernetesBackend

        return KubernetesBackend(instance_id(settings.data_dir), settings)
    raise BackendUnavailable(f"the {settings.backend!r} backend is not available in this version")
