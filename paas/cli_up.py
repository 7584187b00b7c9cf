"""`paas up` (the control plane and its router in the foreground) and `paas images`: the
commands that run things on this machine rather than talk to an API."""

from __future__ import annotations

from pathlib import Path

import click

from paas import lock
from paas.cliconfig import write_config
from paas.settings import BACKENDS, Settings

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
    from paas.control import platform_ca, replace_unfit_ca
    from paas.router import launch
    from paas.server.serve import ControlPlaneServer
    from paas.store import Store

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
    lock.acquire(settings.data_dir, settings.url)
    launch.listen(settings.host, settings.port, "", "use --port").close()  # free, or one sentence
    store = Store.in_data_dir(settings.data_dir)  # migrated here, or refused in one sentence
    try:  # a CA from before name constraints (or for another domain) is replaced: said below
        replaced_ca = replace_unfit_ca(platform_ca(settings), store)
    finally:
        store.close()
    also_on: tuple[str, ...] = ()
    if settings.backend in ("docker", "kubernetes"):
        from paas.backends import make_backend

        # Fails here, in one sentence, without Docker and its images, or without a cluster.
        make_backend(settings).close()
    if settings.backend == "docker":
        from paas.backends.docker import images as docker_images

        client = docker_images.connect()
        old = docker_images.stale(client)
        if old:
            tags = ", ".join(i.tag for i in old)
            click.echo(f"warning: {tags} were built from older source: run `paas images build`", err=True)
        gateway = docker_images.bridge_gateway(client)
        if gateway and settings.host.startswith("127.") and not settings.internal_url:
            also_on = (gateway,)  # where pods reach the git server (host.docker.internal)
    settings = settings.with_token()
    router = launch.start(settings)
    config = write_config(settings.url, settings.token)
    click.echo(f"paas control plane ({settings.backend} backend), data in {settings.data_dir}")
    click.echo(f"console:  {settings.url}/")
    click.echo(f"apps:     {', '.join(router.urls) if router else 'no router (its ports are 0)'}")
    click.echo(f"token:    {settings.token}")
    click.echo(f"CLI configured in {config}; stop with Ctrl-C")
    click.echo(f"git push auth: git config --global credential.{settings.url}.helper '!paas git-credential'")
    click.echo("trust the apps' certificates: paas ca > paas-ca.pem (then add it to your browser or system)")
    if replaced_ca:
        click.echo(f"warning: {replaced_ca}", err=True)
    try:
        ControlPlaneServer(settings, also_on).run()
    finally:
        if router is not None:
            router.stop()


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
