"""The `paas` command line: `paas up` runs the control plane, the rest talk to its API."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import click

from paas import terminal
from paas.cli_core import Context, Group, UserError, global_options, pass_ctx
from paas.cli_up import CONTEXT, images, up
from paas.names import check_app_name


@click.group(cls=Group, context_settings=CONTEXT, invoke_without_command=True)
@click.option(
    "--url", envvar="PAAS_URL", help="Control plane URL (default: from `paas up`, else localhost:8000)."
)
@click.option("--token", envvar="PAAS_TOKEN", help="API token (default: from `paas up`).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.version_option(package_name="paas")
@click.pass_context
def cli(ctx: click.Context, url: str | None, token: str | None, as_json: bool) -> None:
    """paas: push code, get a running app.

    Exit status: 0 done, 1 an error (one line on stderr), 2 a usage error.
    """
    ctx.obj = Context(url, token, as_json)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@cli.command(name="help")
@click.argument("command", nargs=-1)
@click.pass_context
def help_command(ctx: click.Context, command: tuple[str, ...]) -> None:
    """Show help for paas or for one of its commands."""
    group: click.Command = cli
    parent = ctx.parent or ctx
    for name in command:
        found = group.get_command(parent, name) if isinstance(group, click.Group) else None
        if found is None:
            raise click.UsageError(f"no such command {' '.join(command)!r}", ctx)
        parent = click.Context(found, info_name=name, parent=parent)
        group = found
    click.echo(parent.get_help())


def manifest_file(help_text: str) -> Callable[[Callable], Callable]:
    """The `-f FILE` option of the commands that send a manifest."""
    return click.option("-f", "--file", "path", required=True, help=help_text,
                        type=click.Path(dir_okay=False, path_type=Path))


def read_manifest(path: Path) -> tuple[bytes, str]:
    """A manifest file's bytes and the content type they are sent as."""
    return path.read_bytes(), "application/json" if path.suffix == ".json" else "application/yaml"


password_file = click.option(
    "--password-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="A file holding the password of the manifest's source.repo (kept apart, shown as ***); "
         "an empty file: none.",
)


def read_password(path: Path | None) -> str | None:
    """The password in ``path`` (one line, its line break dropped as git-sync drops it)."""
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise UserError(f"{path}: a password file holds UTF-8 text") from None


@cli.command()
@manifest_file("The app's manifest (YAML or JSON).")
@password_file
@global_options
@pass_ctx
def create(ctx: Context, path: Path, password_file: Path | None) -> None:
    """Create an app from its manifest."""
    app = ctx.client.create(*read_manifest(path), read_password(password_file))
    lines = [f"created {app['name']} on port {app['port']}: {app['urls'][0]}"]
    if app["manifest"]["source"]["repo"] is None:
        branch = app["manifest"]["source"]["ref"]
        lines += [
            "deploy it from your app's repository:",
            f"  git remote add paas {ctx.url}/git/{app['name']}.git",
            f"  git push -u paas {branch}       # then: edit, commit, git push",
        ]
    ctx.emit(app, "\n".join(lines))


@cli.command()
@manifest_file("The app's changed manifest (YAML or JSON).")
@password_file
@global_options
@pass_ctx
def apply(ctx: Context, path: Path, password_file: Path | None) -> None:
    """Change an existing app to its manifest: prints what changes and how it rolls out. A
    stored repository password goes only to the origin (scheme, host, port, user) it was
    given for: a source.repo elsewhere needs its own (in the URL or --password-file)."""
    from paas import manifest as manifest_mod

    body, kind = read_manifest(path)
    name = manifest_mod.parse(body).name  # invalid: one clear error, before any request
    result = ctx.client.apply(name, body, kind, read_password(password_file))
    if not result["changes"]:
        return ctx.emit(result, f"{name}: nothing to change")
    how = {
        "live": "rolled out live: a new instance beside the old one, switched when healthy",
        "new pod": "the pod was replaced (these changes need a new pod)",
    }.get(result["rollout"], result["rollout"])
    lines = [f"{name}: {len(result['changes'])} change(s), {how}:"]
    lines += [f"  {c['field']}: {_shown(c['old'])} -> {_shown(c['new'])}" for c in result["changes"]]
    ctx.emit(result, "\n".join(lines))


def _shown(value: object) -> str:
    return "-" if value is None else json.dumps(value) if not isinstance(value, str) else value


@cli.group(context_settings=CONTEXT)
def config() -> None:
    """An app's config variables (override its manifest's env; each change is a release)."""


@config.command(name="get")
@click.argument("name")
@click.argument("key", required=False)
@global_options
@pass_ctx
def config_get(ctx: Context, name: str, key: str | None) -> None:
    """Show the app's variables (or one)."""
    found = ctx.client.config(check_app_name(name))
    if key is not None:
        if key not in found["vars"]:
            raise UserError(f"{name} has no config variable {key}")
        return ctx.emit({key: found["vars"][key]}, found["vars"][key])
    text = "\n".join(f"{k}={v}" for k, v in sorted(found["vars"].items())) or f"{name} has no config variables"
    ctx.emit(found, text)


@config.command(name="set")
@click.argument("name")
@click.argument("pairs", nargs=-1, required=True, metavar="KEY=VALUE...")
@global_options
@pass_ctx
def config_set(ctx: Context, name: str, pairs: tuple[str, ...]) -> None:
    """Set variables; the app takes them per its config.reload (default: a restart without downtime)."""
    changes: dict[str, str | None] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.UsageError(f"{pair!r} is not KEY=VALUE")
        changes[key] = value
    _config_done(ctx, name, ctx.client.set_config(check_app_name(name), changes))


@config.command(name="unset")
@click.argument("name")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@global_options
@pass_ctx
def config_unset(ctx: Context, name: str, keys: tuple[str, ...]) -> None:
    """Remove variables."""
    _config_done(ctx, name, ctx.client.set_config(check_app_name(name), dict.fromkeys(keys)))


def _config_done(ctx: Context, name: str, result: dict) -> None:
    release = result.get("release")
    if not result["changed"]:
        text = f"{name}: config unchanged (v{result['version']})"
    elif release:
        text = f"{name}: v{release['number']} {release['status']} ({release['message']}), config v{result['version']}"
    else:
        text = f"{name}: config v{result['version']} stored; nothing serves yet, the next deploy starts with it"
    ctx.emit(result, text)


@cli.command()
@click.argument("name")
@click.option("--hard", is_flag=True, help="Recreate the pod instead (its volumes stay).")
@global_options
@pass_ctx
def restart(ctx: Context, name: str, hard: bool) -> None:
    """Restart an app without downtime: a new instance beside the old one, switched when healthy."""
    result = ctx.client.restart(check_app_name(name), hard)
    what = "pod recreated" if hard else "restarted"
    ctx.emit(result, f"{name}: {what} in {result['seconds']:.1f} s")


@cli.command(name="list")
@global_options
@pass_ctx
def list_apps(ctx: Context) -> None:
    """List apps: state, the release that serves, the latest release and its outcome."""
    apps = ctx.client.apps()
    rows = [("NAME", "STATE", "SERVING", "LATEST", "URL")] + [
        (a["name"], a["state"], _release(a["serving"], status=False), _release(a["latest"]), a["urls"][0]) for a in apps
    ]
    ctx.emit(apps, _table(rows) if apps else "no apps yet: paas create -f paas.yaml")


@cli.command()
@click.argument("name")
@global_options
@pass_ctx
def status(ctx: Context, name: str) -> None:
    """Show an app's state, what serves, the latest release, containers and recent events."""
    app = ctx.client.get(check_app_name(name))
    ctx.emit(app, "\n".join(_status_lines(app)))


def _status_lines(app: dict) -> list[str]:
    runtime = app["runtime"] or "not known yet (detected from the code)"
    if app["runtime_detected"]:
        runtime += " (detected)"
    serving = app["serving"]
    lines = [
        f"name:      {app['name']}",
        f"state:     {app['state']}",
        *([f"problem:   {app['problem']}: fix it with `paas apply -f FILE`"] if app.get("problem") else []),
        *[f"{'urls:' if i == 0 else '':<11}{url}" for i, url in enumerate(app["urls"])],
        f"runtime:   {runtime}",
        f"serving:   {_release_line(serving) if serving else '-'}",
        f"latest:    {_release(app['latest']) if app['latest'] else '-'}",
    ]
    if app.get("traffic"):
        how = "the app accepts on it" if app["traffic"] == "direct" else "through the runtime's proxy"
        lines.append(f"traffic:   {app['traffic']} ({how})")
    if app.get("crashes"):
        lines.append(f"crashes:   {app['crashes']} (last: {app.get('last_crash') or 'unknown'})")
    failure = app.get("last_failure")
    if failure:
        lines.append(f"last failure (v{failure['number']}, {failure['revision'][:12]}):")
        lines += [f"  {line}" for line in str(failure.get("reason") or "").splitlines()]
    if app.get("sync_error"):
        lines.append(f"git-sync:  {app['sync_error']}")
    for volume in app.get("volumes", []):
        size = _size(volume["bytes"]) if volume["bytes"] is not None else "size not known yet"
        lines.append(f"volume:    {volume['name']} at {volume['path']} ({size})")
    sidecars = [f"{s['name']}{' (platform)' if s['from_platform'] else ''}" for s in app.get("sidecars", [])]
    lines.append(f"sidecars:  {', '.join(sidecars) if sidecars else '-'}")
    lines.append("containers:")
    for c in app["containers"]:
        exited = f" (last exit code {c['exit_code']})" if c.get("exit_code") is not None and c["restarts"] else ""
        lines.append(f"  {c['name']:<10} {c['state']:<10} restarts={c['restarts']}{exited}")
    lines.append("events:")
    lines += [f"  {_when(e['time'])}  {e['message']}" for e in app["events"][:10]]
    return lines


@cli.command()
@click.argument("name")
@global_options
@pass_ctx
def releases(ctx: Context, name: str) -> None:
    """List an app's releases, newest first."""
    found = ctx.client.releases(check_app_name(name))
    rows = [("RELEASE", "STATUS", "REVISION", "CREATED", "MESSAGE")] + [
        (f"v{r['number']}", r["status"], r["revision"][:12], _when(r["created"]), r["message"]) for r in found
    ]
    ctx.emit(found, _table(rows) if found else f"{name} has no releases yet: git push to deploy it")


@cli.command()
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("-n", "--tail", default=200, show_default=True, type=click.IntRange(0, 100_000))
@click.option("--raw", is_flag=True, help="Print the lines as the app wrote them, terminal escape sequences and all.")
@global_options
@pass_ctx
def logs(ctx: Context, name: str, follow: bool, tail: int, raw: bool) -> None:
    """Print an app's logs (every container's), without the terminal escape sequences and
    control characters the app printed (`--raw`: with them)."""
    try:
        for line in ctx.client.logs(check_app_name(name), follow=follow, tail=tail):
            click.echo(line if raw else terminal.clean(line), color=True if raw else None)
    except KeyboardInterrupt:
        pass


@cli.command()
@click.argument("name")
@click.option("--format", "format_", type=click.Choice(["kubernetes"]), default="kubernetes", show_default=True,
              help="What to export as.")
@click.option("--kube-version", default="", metavar="1.N",
              help="The cluster's Kubernetes version: native sidecars from 1.29 (default: a current one).")
@click.option("--image-prefix", default=None, metavar="REGISTRY/",
              help="Prepended to every image, e.g. registry.example.com/team/ (default: PAAS_KUBE_IMAGE_PREFIX).")
@click.option("--namespace", default=None, help="The objects' namespace (default: PAAS_KUBE_NAMESPACE, paas).")
@click.option("--host", default="", help="Add an Ingress routing this host name to the app.")
@global_options
@pass_ctx
def export(ctx: Context, name: str, format_: str, kube_version: str, image_prefix: str | None,
           namespace: str | None, host: str) -> None:
    """Print an app as Kubernetes objects, for `kubectl apply -f -`. Its Secrets hold the app's
    git credentials and config values: keep the output as you keep those."""
    params = {"format": format_, "kube_version": kube_version, "host": host}
    params |= {k: v for k, v in (("image_prefix", image_prefix), ("namespace", namespace)) if v is not None}
    click.echo(ctx.client.export(check_app_name(name), params), nl=False)


@cli.command()
@click.argument("name")
@global_options
@pass_ctx
def ps(ctx: Context, name: str) -> None:
    """List the processes of an app's pod, by container (read through its topz sidecar)."""
    found = ctx.client.processes(check_app_name(name))
    rows = [("PID", "PPID", "CONTAINER", "USER", "CPU%", "MEM%", "RSS", "COMMAND")] + [
        (str(p["pid"]), str(p["ppid"]), p["container"], p["user"], f"{p['cpu_percent']:.1f}",
         f"{p['memory_percent']:.1f}", _size(p["rss"]), p["command"][:120])
        for p in found
    ]
    ctx.emit(found, _table(rows))


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "K", "M"):
        if size < 1024:
            return f"{size:.0f}B" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}G"


@cli.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Don't ask for the app's name (needed without a terminal).")
@global_options
@pass_ctx
def delete(ctx: Context, name: str, yes: bool) -> None:
    """Delete an app: its pod, repo, releases and logs. Asks for the app's name first."""
    check_app_name(name)
    if not yes:
        if not sys.stdin.isatty():
            raise UserError(f"not deleting {name} without confirmation: run it on a terminal or pass --yes")
        typed = click.prompt(f"This deletes {name}, its repository, releases and logs. Type its name to confirm")
        if typed.strip() != name:
            raise UserError(f"{typed.strip()!r} is not {name!r}: nothing was deleted")
    result = ctx.client.delete(name)
    ctx.emit(result, f"deleted {name}")


@cli.command()
@click.argument("name")
@click.argument("revision", required=False)
@global_options
@pass_ctx
def rollback(ctx: Context, name: str, revision: str | None) -> None:
    """Serve an earlier release again (default: the newest one that served before the one
    serving now); REVISION is a release number (v3) or a commit hash. Answers once it serves."""
    release = ctx.client.rollback(check_app_name(name), revision)
    ctx.emit(release, f"{name}: v{release['number']} {release['status']} ({release['message']}), {release['revision'][:12]}")


@cli.command()
@global_options
@pass_ctx
def ca(ctx: Context) -> None:
    """Print the platform CA's certificate (PEM): trust it to trust every app's https.

    For example: paas ca > paas-ca.pem; curl --cacert paas-ca.pem https://NAME.localhost:8443/
    """
    click.echo(ctx.client.ca(), nl=False)


class _ListByDefault(click.Group):
    """`paas certs NAME` is `paas certs list NAME`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@cli.group(cls=_ListByDefault, context_settings=CONTEXT)
def certs() -> None:
    """An app's TLS certificates: the platform CA's for its names in the platform's domain,
    and one you add for its names outside it (`paas certs NAME` lists them)."""


@certs.command(name="list")
@click.argument("name")
@global_options
@pass_ctx
def certs_list(ctx: Context, name: str) -> None:
    """Show the app's certificates (names, issuer, expiry, fingerprint) and the names none covers."""
    ctx.emit(*_certificates(ctx.client.certificates(check_app_name(name))))


@certs.command(name="add")
@click.argument("name")
@click.option("--cert", "cert_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The certificate chain (PEM): the server's certificate, then each issuer.")
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Its private key (PEM, unencrypted).")
@global_options
@pass_ctx
def certs_add(ctx: Context, name: str, cert_file: Path, key_file: Path) -> None:
    """Add (or replace) the certificate for the app's names outside the platform's domain."""
    # Not PEM (DER, say): sent as it reads, for the control plane to say what is wrong with it.
    chain, key = (f.read_bytes().decode("utf-8", errors="replace") for f in (cert_file, key_file))
    found = ctx.client.add_certificate(check_app_name(name), chain, key)
    served = "; its pod serves it within seconds" if found["https"] else ""
    ctx.emit(*_certificates(found, f"{name}: certificate added{served}"))


@certs.command(name="remove")
@click.argument("name")
@global_options
@pass_ctx
def certs_remove(ctx: Context, name: str) -> None:
    """Remove the added certificate (clients then get the platform CA's for its names)."""
    found = ctx.client.remove_certificate(check_app_name(name))
    ctx.emit(*_certificates(found, f"{name}: the added certificate was removed"))


def _certificates(found: dict, first: str = "") -> tuple[dict, str]:
    rows = [("SOURCE", "NAMES", "ISSUER", "NOT AFTER", "SHA-256 FINGERPRINT")] + [
        (c["source"], ", ".join(c["names"]), c["issuer"], c["not_after"][:16].replace("T", " "), c["fingerprint"])
        for c in found["certificates"]
    ]
    lines = [first] if first else []
    lines.append(_table(rows) if found["certificates"] else f"{found['app']} has no certificates")
    if not found["https"]:
        lines.append(f"{found['app']} has no https sidecar: add `sidecars: [https]` to its manifest to serve them")
    elif found["uncovered"]:
        lines.append(f"not covered: {', '.join(found['uncovered'])} "
                     f"(paas certs add {found['app']} --cert FILE --key FILE)")
    return found, "\n".join(lines)


cli.add_command(up)
cli.add_command(images)


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


def _release(release: dict | None, status: bool = True) -> str:
    if not release:
        return "-"
    return f"v{release['number']} {release['status']}" if status else f"v{release['number']}"


def _release_line(release: dict) -> str:
    return f"v{release['number']} {release['revision'][:12]} {release['message']!r} (since {_when(release['updated'])})"


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def main() -> None:
    cli.main(prog_name="paas")


if __name__ == "__main__":
    main()
