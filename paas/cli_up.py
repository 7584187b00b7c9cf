"""`paas up` (the control plane and its router in the foreground) and `paas images`: the
commands that run things on this machine rather than talk to an API."""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

from paas import lock
from paas.cliconfig import write_config
from paas.settings import BACKENDS, Settings

if TYPE_CHECKING:
    from paas.supervisor import Part

CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.command()
@click.option("--host", envvar="PAAS_HOST", help="Address to listen on [default: 127.0.0.1].")
@click.option("--port", envvar="PAAS_PORT", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--backend",
    envvar="PAAS_BACKEND",
    default="local",
    show_default=True,
    type=click.Choice(BACKENDS),
    help="Where pods run.",
)
@click.option(
    "--data-dir",
    envvar="PAAS_DATA",
    type=click.Path(path_type=Path),
    help="Where apps, repos and pods live (default ~/.local/share/paas).",
)
@click.option(
    "--apps-host", envvar="PAAS_APPS_HOST", help="Address app ports listen on [default: the --host address]."
)
@click.option(
    "--default-sidecars",
    envvar="PAAS_DEFAULT_SIDECARS",
    help="Sidecars added to every app's pod, comma-separated (e.g. topz); an app may decline one.",
)
@click.option("--domain", envvar="PAAS_DOMAIN", help="Apps are served at NAME.DOMAIN [default: localhost].")
@click.option("--router-port", envvar="PAAS_ROUTER_PORT", type=click.IntRange(0, 65535),
              help="The router's plain-HTTP port, 0 for none [default: 8080].")
@click.option("--router-tls-port", envvar="PAAS_ROUTER_TLS_PORT", type=click.IntRange(0, 65535),
              help="The router's TLS port (apps with the https sidecar), 0 for none [default: 8443].")
def up(
    host: str | None,
    port: int,
    backend: str,
    data_dir: Path | None,
    apps_host: str | None,
    default_sidecars: str | None,
    domain: str | None,
    router_port: int | None,
    router_tls_port: int | None,
) -> None:
    """Run the control plane (API, git server, console) and the router in the foreground."""
    from paas import datadir
    from paas.backends import appuids, podhost
    from paas.control import platform_ca, replace_unfit_ca
    from paas.router import launch
    from paas.server import serve
    from paas.store import Store
    from paas.supervisor import Part
    from paas.supervisor import launch as supervise

    settings = Settings.load(
        {
            "host": host,
            "port": port,
            "backend": backend,
            "data_dir": data_dir,
            "apps_host": apps_host,
            "default_sidecars": default_sidecars,
            "domain": domain,
            "router_port": router_port,
            "router_tls_port": router_tls_port,
        }
    )
    # First of all: a data directory a running control plane holds is left alone.
    lock.acquire(settings.data_dir, settings.url)  # its parents made as the user's umask says
    os.umask(0o077)  # everything the platform writes from here on is its own
    listeners = [launch.listen(settings.host, settings.port, "", "use --port")]  # free, or one sentence
    router = launch.part(settings)  # its ports free, or one sentence; open until the router has them
    uids = settings.uids if settings.backend == "local" else None
    datadir.secure(settings.data_dir, apps_pass_through=uids is not None)
    store = Store.in_data_dir(settings.data_dir)  # migrated here, or refused in one sentence
    try:  # a CA from before name constraints (or for another domain) is replaced: said below
        replaced_ca = replace_unfit_ca(platform_ca(settings), store)
    finally:
        store.close()
    if replaced_ca:
        click.echo(f"warning: {replaced_ca}", err=True)
    if uids is not None:
        appuids.check_reachable(uids.start, settings.data_dir / datadir.PODS)
    for address in _check_backend(settings):
        listeners.append(launch.listen(address, settings.port, " (the Docker bridge's address)", "use --port"))
    settings = settings.with_token()
    parts: list[Part] = []
    if settings.backend == "local":
        settings = replace(settings, pod_host=str(podhost.socket_path(settings.data_dir)))
        parts.append(_pod_host(settings))
    if router is not None:
        parts.append(router[0])
    fds = tuple(listener.fileno() for listener in listeners)
    lock_fd = lock.descriptor(settings.data_dir)
    api_url = urlsplit(settings.url)
    parts.append(Part("API", [sys.executable, "-m", "paas.server.serve"],
                      env=serve.environment(settings, fds, lock_fd), pass_fds=(*fds, lock_fd),
                      ready_http=(api_url.hostname or "127.0.0.1", api_url.port or 80, "/api/v1/healthz")))
    config = write_config(settings.url, settings.token)
    banner = [
        f"paas control plane ({settings.backend} backend), data in {settings.data_dir}",
        f"console:  {settings.url}/",
        f"apps:     {', '.join(router[1]) if router else 'no router (its ports are 0)'}",
        f"users:    {_who_apps_run_as(settings)}",
        f"token:    {settings.token}",
        f"CLI configured in {config}; stop with Ctrl-C",
        f"git push auth: git config --global credential.{settings.url}.helper '!paas git-credential'",
        "trust the apps' certificates: paas ca > paas-ca.pem (then add it to your browser or system)",
    ]
    supervise(settings.data_dir, parts, banner)  # this process becomes the supervisor


def _check_backend(settings: Settings) -> tuple[str, ...]:
    """Fail here, in one sentence, without Docker and its images, or without a cluster; the
    addresses the API listens on besides ``--host`` (where docker pods reach it: the bridge's)."""
    if settings.backend not in ("docker", "kubernetes"):
        return ()
    from paas.backends import make_backend

    make_backend(settings).close()
    if settings.backend != "docker":
        return ()
    from paas.backends.docker import images as docker_images

    client = docker_images.connect()
    old = docker_images.stale(client)
    if old:
        tags = ", ".join(i.tag for i in old)
        click.echo(f"warning: {tags} were built from older source: run `paas images build`", err=True)
    gateway = docker_images.bridge_gateway(client)
    if gateway and settings.host.startswith("127.") and not settings.internal_url:
        return (gateway,)  # where pods reach the git server (host.docker.internal)
    return ()


def _pod_host(settings: Settings) -> Part:
    """The local backend's pods, in a process of their own that outlives the API's worker."""
    from paas.backends import podhost
    from paas.supervisor import Part

    uids = settings.uids
    argv = [sys.executable, "-m", "paas.backends.podhost", "--data-dir", str(settings.data_dir),
            "--apps-host", settings.app_address, "--app-uids", f"{uids.start}-{uids.stop - 1}" if uids else "off"]
    path = podhost.socket_path(settings.data_dir)
    path.unlink(missing_ok=True)  # a killed pod host's: ready means a new one listens
    return Part("pod host", argv, ready_path=str(path))


def _who_apps_run_as(settings: Settings) -> str:
    if settings.backend != "local":
        return f"apps run in their pods on {settings.backend} (as their images' users)"
    uids = settings.uids
    if uids is not None:
        return f"each app runs as a uid of its own ({uids.start}-{uids.stop - 1}), kept out of the platform's files"
    if os.geteuid() == 0:
        return "apps run as root (PAAS_APP_UIDS=off): they can read the platform's secrets"
    return (f"apps run as you ({getpass.getuser()}) and share your rights; the platform's files are "
            "private (0600/0700), but run paas up as root to give each app a user of its own")


@click.group(context_settings=CONTEXT)
def images() -> None:
    """Pod images for the docker backend."""


@images.command(name="build")
@click.option(
    "--offline-base/--no-offline-base",
    default=None,
    help="Build the base image from Debian packages (default: only when it can't be pulled).",
)
@click.option(
    "--base", default=None, help="Base image every Dockerfile builds FROM [default: python:3.11-slim]."
)
@click.option(
    "--control-plane/--no-control-plane",
    default=True,
    show_default=True,
    help="Also build the control plane's image (for docker-compose).",
)
def images_build(offline_base: bool | None, base: str | None, control_plane: bool) -> None:
    """Build the git-sync, runtime and control plane images (the base image first if missing)."""
    from paas.backends.docker import images as docker_images

    client = docker_images.connect()
    wanted = docker_images.IMAGES if control_plane else docker_images.POD_IMAGES
    docker_images.build(client, wanted, base or docker_images.BASE_IMAGE, offline_base, say=click.echo)
    click.echo("built " + ", ".join(image.tag for image in wanted))
