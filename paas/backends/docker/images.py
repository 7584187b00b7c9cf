"""Building the pod images, and the offline base image when no registry can be reached.

Every Dockerfile names its base by the build arg ``BASE_IMAGE`` (default
``python:3.11-slim``). On a machine with no registry the base can't be pulled, so it is
built from Debian packages instead: ``debootstrap`` a bookworm minbase with python3, venv,
pip, git, an ssh client and tini, copy in the host's CA bundle (so pip and apt inside
containers trust what the host trusts), and ``docker import`` it under the base's tag.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import APIError, BuildError, DockerException, ImageNotFound

from paas import __version__
from paas.errors import BackendUnavailable, PaasError

BASE_IMAGE = "python:3.11-slim"
_NOT_SOURCE = {".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", "build", "dist"}
SOURCE_ROOT = Path(__file__).resolve().parents[3]
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
OFFLINE_PACKAGES = (
    "python3",
    "python3-venv",
    "python3-pip",
    "python-is-python3",
    "git",
    "passwd",
    "openssh-client",
    "ca-certificates",
    "tini",
)
OFFLINE_SUITE = "bookworm"


class ImageBuildFailed(PaasError):
    status = 500


@dataclass(frozen=True)
class Image:
    name: str
    context: str  # relative to the source root
    dockerfile: str  # relative to the context

    @property
    def tag(self) -> str:
        return f"paas-{self.name}:{__version__}"

    def source_digest(self) -> str:
        """A hash of the files the image is built from (its label ``paas.source``), so an image
        built before the source changed is known to be stale."""
        digest = hashlib.sha256()
        root = SOURCE_ROOT / self.context
        for path in sorted(root.rglob("*")):
            parts = path.relative_to(root).parts
            if path.is_file() and not any(p in _NOT_SOURCE or p.endswith(".egg-info") for p in parts):
                digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()[:16]


IMAGES = (
    Image("git-sync", "sidecar-git-sync", "Dockerfile"),
    Image("runtime-python", "runtimes", "python/Dockerfile"),
    # Built FROM the python runtime image: node adds Node.js (a superset that runs python,
    # node and static apps, used when a manifest leaves the runtime to detection).
    Image("runtime-node", "runtimes", "node/Dockerfile"),
    Image("runtime-static", "runtimes", "static/Dockerfile"),
    Image("topz", "sidecar-topz", "Dockerfile"),
    Image("config", "sidecar-config", "Dockerfile"),
    Image("https", "sidecar-https", "Dockerfile"),
    Image("control-plane", ".", "Dockerfile"),
)
POD_IMAGES = tuple(i for i in IMAGES if i.name != "control-plane")
RUNTIME_BASE = IMAGES[1]


def bridge_gateway(client: docker.DockerClient) -> str | None:
    """The host's address on Docker's default bridge: what ``host-gateway`` means in a pod."""
    try:
        configs = client.networks.get("bridge").attrs.get("IPAM", {}).get("Config") or []
    except DockerException:
        return None
    for config in configs:
        if ":" in config.get("Subnet", ":"):
            continue  # IPv6
        # Docker gives the bridge the subnet's first address unless told otherwise.
        return config.get("Gateway") or str(ipaddress.ip_network(config["Subnet"], strict=False)[1])
    return None


def connect() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except DockerException as e:
        raise BackendUnavailable(
            f"cannot reach the Docker engine ({_reason(e)}): is dockerd running?"
        ) from None
    return client


def missing(client: docker.DockerClient, images: tuple[Image, ...] = POD_IMAGES) -> list[Image]:
    return [image for image in images if not _exists(client, image.tag)]


def stale(client: docker.DockerClient, images: tuple[Image, ...] = POD_IMAGES) -> list[Image]:
    """Images that exist but were built from other source than what is here now."""
    found = []
    for image in images:
        try:
            labels = client.images.get(image.tag).labels or {}
        except ImageNotFound:
            continue
        if labels.get("paas.source") != image.source_digest():
            found.append(image)
    return found


def build(
    client: docker.DockerClient,
    images: tuple[Image, ...] = IMAGES,
    base: str = BASE_IMAGE,
    offline_base: bool | None = None,
    say: Callable[[str], None] = print,
) -> None:
    """Build ``images`` (the base first if it is missing; ``offline_base`` forces or forbids that)."""
    if not (SOURCE_ROOT / "sidecar-git-sync" / "Dockerfile").exists():
        raise ImageBuildFailed(
            f"building images needs the paas source tree; {SOURCE_ROOT} has no Dockerfiles"
        )
    ensure_base(client, base, offline_base, say)
    for image in images:
        say(f"building {image.tag} from {image.context}/{image.dockerfile}")
        try:
            client.images.build(
                path=str(SOURCE_ROOT / image.context),
                dockerfile=image.dockerfile,
                tag=image.tag,
                buildargs={"BASE_IMAGE": base, "RUNTIME_IMAGE": RUNTIME_BASE.tag},
                labels={"paas.source": image.source_digest()},
                rm=True,
                forcerm=True,
                pull=False,
            )
        except BuildError as e:
            lines = [str(chunk.get("stream", "")).rstrip() for chunk in e.build_log if chunk.get("stream")]
            tail = "\n".join(line for line in lines[-15:] if line)
            raise ImageBuildFailed(f"building {image.tag} failed: {e.msg}", tail.splitlines()) from None
        except APIError as e:
            raise ImageBuildFailed(f"building {image.tag} failed: {_reason(e)}") from None


def ensure_base(
    client: docker.DockerClient, base: str, offline: bool | None, say: Callable[[str], None]
) -> None:
    if _exists(client, base):
        return
    if not offline:
        try:
            say(f"pulling {base}")
            client.images.pull(base)
            return
        except DockerException as e:
            if offline is False:
                raise ImageBuildFailed(f"cannot pull the base image {base}: {_reason(e)}") from None
            say(f"cannot pull {base} ({_reason(e)}); building it from Debian packages instead")
    build_offline_base(client, base, say)


def build_offline_base(client: docker.DockerClient, tag: str, say: Callable[[str], None] = print) -> None:
    """Build ``tag`` from Debian packages with debootstrap (root and the debootstrap command)."""
    if shutil.which("debootstrap") is None:
        raise ImageBuildFailed("the offline base image needs debootstrap: apt-get install debootstrap")
    if os.geteuid() != 0:
        raise ImageBuildFailed("the offline base image needs root (debootstrap creates device files)")
    repository, _, version = tag.partition(":")
    with tempfile.TemporaryDirectory(prefix="paas-base-", dir="/var/tmp") as tmp:
        rootfs, tarball = Path(tmp) / "rootfs", Path(tmp) / "rootfs.tar"
        say(f"debootstrap {OFFLINE_SUITE} minbase into {rootfs} (about a minute)")
        command = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(OFFLINE_PACKAGES)}",
            OFFLINE_SUITE,
            str(rootfs),
        ]
        mirror = host_mirror()
        result = subprocess.run(command + ([mirror] if mirror else []), capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip().splitlines()[-10:]
            raise ImageBuildFailed("debootstrap failed", tail)
        if CA_BUNDLE.exists():
            shutil.copyfile(CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
        for leftovers in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / leftovers).glob("*"):
                if item.is_file():
                    item.unlink()
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
        bundle = "/etc/ssl/certs/ca-certificates.crt"
        changes = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            f"ENV SSL_CERT_FILE={bundle} PIP_CERT={bundle} REQUESTS_CA_BUNDLE={bundle}",
            'CMD ["python3"]',
        ]
        say(f"importing {tag}")
        client.api.import_image_from_file(
            str(tarball), repository=repository, tag=version or "latest", changes=changes
        )


def host_mirror() -> str | None:
    """The Debian mirror this host's apt uses (debootstrap's own default when none is found)."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        match = re.search(r"^URIs:\s*(\S+/debian)\s*$", sources.read_text(), re.M)
        if match:
            return match.group(1)
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        match = re.search(rf"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+{OFFLINE_SUITE}\s", legacy.read_text(), re.M)
        if match:
            return match.group(1)
    return None


def _exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except ImageNotFound:
        return False


def _reason(e: Exception) -> str:
    explanation = getattr(e, "explanation", None)
    text = str(explanation or e).strip().splitlines()
    return text[0] if text else type(e).__name__
