"""How a pod spec is rendered for a cluster (`render.Options`), from the settings and what
`paas export` is asked; every value checked here, with one sentence saying what is wrong."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from paas.errors import InvalidInput
from paas.settings import Settings

DEFAULT_VERSION = (1, 33)
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
HOST = re.compile(r"(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
IMAGE_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,200}/")


@dataclass(frozen=True)
class Options:
    namespace: str = "default"
    kube_version: tuple[int, int] = DEFAULT_VERSION
    image_prefix: str = ""  # e.g. registry.example.com/team/ (images keep their name:tag)
    host_network: bool = False
    apps_host: str = "127.0.0.1"  # host network: where the app's port listens
    ports: Mapping[str, int] = field(default_factory=dict)  # host network: "container/port" -> node port
    grace_period: int = 30
    instance: str = ""  # labels what one control plane made; empty in an export
    ingress_host: str = ""


def parse_version(text: str) -> tuple[int, int]:
    """``1.29`` (or ``v1.29.3``) -> (1, 29)."""
    match = re.fullmatch(r"v?(\d{1,3})\.(\d{1,3})(?:\.\d{1,4})?", text.strip())
    if not match or int(match[1]) != 1:
        raise InvalidInput(f"the Kubernetes version must look like 1.33, not {text[:40]!r}")
    return int(match[1]), int(match[2])


def check_namespace(name: str) -> str:
    if not DNS_LABEL.fullmatch(name):
        raise InvalidInput(f"namespace {name[:70]!r} is not a DNS label (lowercase letters, digits and '-')")
    return name


def check_image_prefix(prefix: str) -> str:
    if prefix and not IMAGE_PREFIX.fullmatch(prefix):
        raise InvalidInput(
            f"image prefix {prefix[:70]!r} must be a registry path ending in '/', like registry.example.com/team/"
        )
    return prefix


def export_options(settings: Settings, kube_version: str = "", image_prefix: str | None = None,
                   namespace: str | None = None, host: str = "") -> Options:
    if host and not HOST.fullmatch(host):
        raise InvalidInput(f"host {host[:70]!r} is not a DNS name")
    return Options(
        namespace=check_namespace(settings.kube_namespace if namespace is None else namespace),
        kube_version=parse_version(kube_version) if kube_version else DEFAULT_VERSION,
        image_prefix=check_image_prefix(settings.kube_image_prefix if image_prefix is None else image_prefix),
        grace_period=settings.kube_grace_period,
        ingress_host=host,
    )
