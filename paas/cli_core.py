"""The `paas` command line's plumbing: errors as one line (or JSON), the shared options, the
context every command gets."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from paas.cliconfig import DEFAULT_URL, read_config
from paas.errors import PaasError

if TYPE_CHECKING:
    from paas.client import Client

EXIT_ERROR, EXIT_USAGE = 1, 2


class UserError(click.ClickException):
    """An error for people: one line on stderr, or with ``--json`` the API's error object."""

    def __init__(self, message: str, as_json: bool = False, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.as_json, self.details = as_json, details or []

    def show(self, file: Any = None) -> None:
        if self.as_json:
            click.echo(json.dumps({"error": self.message, "details": self.details}), err=True)
        else:
            click.echo(f"error: {self.format_message()}", err=True)


class Group(click.Group):
    """Turns the domain's errors into one line on stderr and exit status 1, and usage
    errors into one line and exit status 2 (never click's multi-line usage block)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PaasError as e:
            if _as_json(ctx):
                raise UserError(e.message, as_json=True, details=e.details) from None
            raise UserError(e.message + "".join(f"\n  {d}" for d in e.details if d not in e.message)) from None
        except OSError as e:
            raise UserError(f"{e.strerror or e}: {e.filename}" if e.filename else str(e), _as_json(ctx)) from None
        except UserError as e:
            e.as_json = e.as_json or _as_json(ctx)
            raise

    def main(  # type: ignore[override]  # always standalone: errors end the process here
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> Any:
        extra.pop("standalone_mode", None)
        try:
            result = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.UsageError as e:
            where = f"paas {e.ctx.command_path.partition(' ')[2]}".strip() if e.ctx else "paas"
            message = f"{e.format_message()} (see `{where} -h`)"
            # Parsing stopped where it failed, so the flag is looked for in the words themselves.
            if "--json" in (sys.argv[1:] if args is None else args):
                click.echo(json.dumps({"error": message, "details": []}), err=True)
            else:
                click.echo(f"error: {message}", err=True)
            sys.exit(EXIT_USAGE)
        except click.ClickException as e:
            e.show()
            sys.exit(EXIT_ERROR if e.exit_code == 1 else e.exit_code)
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            sys.exit(130)
        sys.exit(result if isinstance(result, int) else 0)


class Context:
    def __init__(self, url: str | None, token: str | None, as_json: bool) -> None:
        self._url, self._token, self.as_json = url, token, as_json

    @property
    def url(self) -> str:
        return self._url or read_config().get("url") or DEFAULT_URL

    @property
    def token(self) -> str:
        return self._token or read_config().get("token") or ""

    @property
    def client(self) -> Client:
        from paas.client import Client  # requests: only for the commands that talk to the API

        return Client(self.url, self.token)

    def emit(self, data: Any, text: str) -> None:
        click.echo(json.dumps(data, indent=2) if self.as_json else text)


pass_ctx = click.make_pass_decorator(Context)


def _as_json(ctx: click.Context) -> bool:
    obj = ctx.find_object(Context)
    return obj is not None and obj.as_json


def _after_command(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    """An option given after the command sets what the same option before it would."""

    def store(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        obj = ctx.find_object(Context)
        if obj is not None and value not in (None, False):
            setattr(obj, name, value)

    return store


def global_options(command: Callable) -> Callable:
    """`--url`, `--token` and `--json` on a command too, so they work after it as before it."""
    for flag, name, is_flag in (("--json", "as_json", True), ("--token", "_token", False), ("--url", "_url", False)):
        command = click.option(
            flag, name, is_flag=is_flag, default=None if not is_flag else False, expose_value=False,
            callback=_after_command(name), help=f"As `paas {flag}` before the command.",
        )(command)
    return command
