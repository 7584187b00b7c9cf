"""The `paas` command line: `paas up` runs the control plane, the rest talk to its API."""

from __future__ import annotations

import json
import socket
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from paas.client import DEFAULT_URL, Client, read_config, write_config
from paas.errors import PaasError
from paas.names import check_app_name
from paas.settings import BACKENDS, Settings


class UserError(click.ClickException):
    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class Group(click.Group):
    """Turns the domain's errors into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PaasError as e:
            raise UserError(
                e.message + "".join(f"\n  {d}" for d in e.details if d not in e.message)
            ) from None
        except OSError as e:
            raise UserError(f"{e.strerror or e}: {e.filename}" if e.filename else str(e)) from None


class Context:
    def __init__(self, url: str | None, token: str | None, as_json: bool) -> None:
        saved = read_config()
        self.url = url or saved.get("url") or DEFAULT_URL
        self.token = token or saved.get("token") or ""
        self.as_json = as_json

    @property
    def client(self) -> Client:
        return Client(self.url, self.token)

    def emit(self, data: Any, text: str) -> None:
        click.echo(json.dumps(data, indent=2) if self.as_json else text)


pass_ctx = click.make_pass_decorator(Context)


@click.group(cls=Group)
@click.option(
    "--url", envvar="PAAS_URL", help="Control plane URL (default: from `paas up`, else localhost:8000)."
)
@click.option("--token", envvar="PAAS_TOKEN", help="API token (default: from `paas up`).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.version_option(package_name="paas")
@click.pass_context
def cli(ctx: click.Context, url: str | None, token: str | None, as_json: bool) -> None:
    """paas: push code, get a running app."""
    ctx.obj = Context(url, token, as_json)


@cli.command()
@click.option(
    "--host",
    envvar="PAAS_HOST",
    help="Address to listen on [default: 127.0.0.1; 0.0.0.0 with --backend docker].",
)
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
def up(host: str | None, port: int, backend: str, data_dir: Path | None) -> None:
    """Run the control plane (API, git server, console) in the foreground."""
    from paas.server.serve import ControlPlaneServer

    settings = Settings.load({"host": host, "port": port, "backend": backend, "data_dir": data_dir})
    _check_port_free(settings.host, settings.port)
    if settings.backend != "local":
        from paas.backends import make_backend

        make_backend(settings).close()  # fails here, in one sentence, if Docker or its images are missing
    settings = settings.with_token()
    config = write_config(settings.url, settings.token)
    click.echo(f"paas control plane ({settings.backend} backend), data in {settings.data_dir}")
    click.echo(f"console:  {settings.url}/")
    click.echo(f"token:    {settings.token}")
    click.echo(f"CLI configured in {config}; stop with Ctrl-C")
    click.echo(f"git push auth: git config --global credential.{settings.url}.helper '!paas git-credential'")
    ControlPlaneServer(settings).run()


@cli.command()
@click.option(
    "-f",
    "--file",
    "path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The app's manifest (YAML or JSON).",
)
@pass_ctx
def create(ctx: Context, path: Path) -> None:
    """Create an app from its manifest."""
    body = path.read_bytes()
    kind = "application/json" if path.suffix == ".json" else "application/yaml"
    app = ctx.client.create(body, kind)
    lines = [f"created {app['name']} on port {app['port']}: {app['url']}"]
    if app["manifest"]["source"]["repo"] is None:
        branch = app["manifest"]["source"]["ref"]
        lines.append(f"deploy with: git push {ctx.url}/git/{app['name']}.git {branch}")
    ctx.emit(app, "\n".join(lines))


@cli.command(name="list")
@pass_ctx
def list_apps(ctx: Context) -> None:
    """List apps."""
    apps = ctx.client.list()
    rows = [("NAME", "STATE", "RELEASE", "REVISION", "URL")] + [
        (a["name"], a["state"], _release(a["release"]), (a["revision"] or "")[:12], a["url"]) for a in apps
    ]
    ctx.emit(apps, _table(rows) if apps else "no apps yet: paas create -f paas.yaml")


@cli.command()
@click.argument("name")
@pass_ctx
def status(ctx: Context, name: str) -> None:
    """Show an app's state, release, containers and recent events."""
    app = ctx.client.get(check_app_name(name))
    lines = [
        f"name:      {app['name']}",
        f"state:     {app['state']}",
        f"url:       {app['url']}",
        f"runtime:   {app['runtime'] or 'detected'}",
        f"release:   {_release(app['release'])}",
        f"revision:  {app['revision'] or '-'}",
    ]
    traffic = (app.get("runtime_state") or {}).get("traffic")
    if traffic:
        how = "the app accepts on it" if traffic == "direct" else "through the runtime's proxy"
        lines.append(f"traffic:   {traffic} ({how})")
    failed = (app.get("runtime_state") or {}).get("failed")
    if failed and failed.get("revision") != app["revision"]:
        lines.append(f"last failure ({(failed.get('revision') or '')[:12]}):")
        lines += [f"  {line}" for line in str(failed.get("reason", "")).splitlines()]
    lines.append("containers:")
    lines += [f"  {c['name']:<10} {c['state']:<10} restarts={c['restarts']}" for c in app["containers"]]
    lines.append("events:")
    lines += [f"  {_when(e['time'])}  {e['message']}" for e in app["events"][:10]]
    ctx.emit(app, "\n".join(lines))


@cli.command()
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("-n", "--tail", default=200, show_default=True, type=click.IntRange(0, 100_000))
@pass_ctx
def logs(ctx: Context, name: str, follow: bool, tail: int) -> None:
    """Print an app's logs (every container's)."""
    try:
        for line in ctx.client.logs(check_app_name(name), follow=follow, tail=tail):
            click.echo(line)
    except KeyboardInterrupt:
        pass


@cli.command()
@click.argument("name")
@pass_ctx
def delete(ctx: Context, name: str) -> None:
    """Delete an app: its pod, repo, releases and logs."""
    result = ctx.client.delete(check_app_name(name))
    ctx.emit(result, f"deleted {name}")


@cli.command()
@click.argument("name")
@click.argument("revision", required=False)
@pass_ctx
def rollback(ctx: Context, name: str, revision: str | None) -> None:
    """Serve an earlier release again (default: the one before the current); REVISION is a
    release number (v3) or a commit hash."""
    release = ctx.client.rollback(check_app_name(name), revision)
    ctx.emit(
        release,
        f"{name}: v{release['number']} rolls back to {release['revision'][:12]} ({release['message']})",
    )


@cli.group()
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


@cli.command(name="git-credential")
@click.argument("operation")
@pass_ctx
def git_credential(ctx: Context, operation: str) -> None:
    """Git credential helper that answers with the paas token.

    Set it up once: git config --global credential.URL.helper '!paas git-credential'
    """
    if operation != "get":
        return
    fields = dict(line.split("=", 1) for line in sys.stdin.read().splitlines() if "=" in line)
    ours = urlsplit(ctx.url)
    if fields.get("protocol") == ours.scheme and fields.get("host") == ours.netloc and ctx.token:
        click.echo(f"username=paas\npassword={ctx.token}")


def _check_port_free(host: str, port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise PaasError(f"cannot listen on {host}:{port}: {e.strerror} (use --port)") from None


def _release(release: dict | None) -> str:
    return f"v{release['number']} {release['status']}" if release else "-"


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def main() -> None:
    cli(prog_name="paas")


if __name__ == "__main__":
    main()
