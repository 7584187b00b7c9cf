"""Flags and `GITSYNC_*` environment variables, named and meant as in upstream git-sync v4.

Each option is one field of `Options`: the field name gives the flag
(`sync_timeout` -> `--sync-timeout`) and the environment variable
(`GITSYNC_SYNC_TIMEOUT`), its annotation the value type. Adding an upstream
flag is one line here plus the code that uses it. A flag on the command line
wins over its environment variable, which wins over the default.
"""

import argparse
import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from git_sync import __version__

ENV_PREFIX = "GITSYNC_"
GC_MODES = ("auto", "always", "aggressive", "off")


class ConfigError(Exception):
    """A flag or environment variable is missing, unknown or malformed."""


class EarlyExit(Exception):
    """`--help` or `--version` has printed its answer; exit 0."""


# Go's strconv.ParseBool, which upstream uses for flags and environment alike.
_BOOLS = {
    **dict.fromkeys(("1", "t", "T", "true", "TRUE", "True"), True),
    **dict.fromkeys(("0", "f", "F", "false", "FALSE", "False"), False),
}

_DURATION_UNITS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_bool(text: str) -> bool:
    try:
        return _BOOLS[text]
    except KeyError:
        raise ValueError(f"invalid boolean {text!r} (want true or false)") from None


def parse_duration(text: str) -> float:
    """Seconds in a Go duration such as `500ms`, `10s` or `1m30s` (Go's time.ParseDuration)."""
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0.0
    parts = _DURATION_PART.findall(body)
    if not parts or "".join(number + unit for number, unit in parts) != body:
        raise ValueError(f"invalid duration {text!r} (want e.g. 500ms, 10s, 1m30s)")
    seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
    return -seconds if text.startswith("-") else seconds


def parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"invalid integer {text!r}") from None


_PARSERS: dict[Any, Callable[[str], Any]] = {str: str, int: parse_int, bool: parse_bool}
_METAVARS = {str: "STRING", int: "INT", bool: "BOOL", float: "DURATION"}


def flag(default: Any, help: str, **meta: Any) -> Any:
    """Declare an option. `meta`: parse, shown (default as written), short, env_only, const."""
    return dataclasses.field(default=default, metadata={"help": help, **meta})


def duration(default: str, help: str) -> Any:
    return flag(parse_duration(default), help, parse=parse_duration, shown=default)


@dataclass(frozen=True)
class Options:
    repo: str = flag("", "the git repository to sync (required)")
    ref: str = flag("HEAD", "the git revision (branch, tag, or full commit hash) to sync")
    root: str = flag("", "the root directory for git-sync operations, under which --link is "
                         "created (required)")
    link: str = flag("", "the symlink (absolute, or relative to --root) to the synced "
                         "worktree; defaults to the last path element of --repo without .git")
    period: float = duration("10s", "how long to wait between syncs, at least 10ms")
    sync_timeout: float = duration("120s", "the total time allowed for one sync, at least 10ms")
    depth: int = flag(1, "fetch this many commits of history; 0 fetches all of it")
    max_failures: int = flag(0, "consecutive sync failures allowed before exiting non-zero; "
                                "negative retries forever")
    one_time: bool = flag(False, "sync once, then exit 0 (or non-zero if it failed)")
    http_bind: str = flag("", "the address (HOST:PORT or :PORT) for the HTTP endpoint; "
                              "empty: no HTTP endpoint")
    http_metrics: bool = flag(True, "serve Prometheus metrics at /metrics on --http-bind")
    username: str = flag("", "the username for git HTTP authentication")
    password: str = flag("", "the password or token for git HTTP authentication", env_only=True)
    password_file: str = flag("", "a file holding the password or token for git HTTP "
                                  "authentication, read before every sync")
    git: str = flag("git", "the git command to run (subject to PATH search, mostly for testing)")
    git_gc: str = flag("auto", "git garbage collection after a change: " + ", ".join(GC_MODES))
    verbose: int = flag(0, "log at this level and below: 0 events, 1 git commands, "
                           "2 no-op syncs and HTTP requests", short="v", const=1)


def flag_name(field: dataclasses.Field) -> str:
    return "--" + field.name.replace("_", "-")


def env_name(field: dataclasses.Field) -> str:
    return ENV_PREFIX + field.name.upper()


def shown_default(field: dataclasses.Field) -> str:
    if "shown" in field.metadata:
        return field.metadata["shown"]
    if field.type is bool:
        return "true" if field.default else "false"
    return str(field.default) if field.default != "" else '""'


def describe() -> Iterator[tuple[str | None, str, str, str]]:
    """(flag or None when env-only, env var, default as written, help) for every option."""
    for field in dataclasses.fields(Options):
        name = None if field.metadata.get("env_only") else flag_name(field)
        yield name, env_name(field), shown_default(field), field.metadata["help"]


def parse(argv: Sequence[str], environ: Mapping[str, str]) -> Options:
    """Options from `argv` (flags) over `environ` (`GITSYNC_*`) over the defaults."""
    given = vars(_argument_parser().parse_args(argv))
    values: dict[str, Any] = {}
    for field in dataclasses.fields(Options):
        if field.name in given:
            values[field.name] = given[field.name]
        elif environ.get(env_name(field)):
            try:
                values[field.name] = _parser_for(field)(environ[env_name(field)])
            except ValueError as e:
                raise ConfigError(f"${env_name(field)}: {e}") from None
    return _finish(Options(**values))


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so the caller picks the exit code."""

    def error(self, message: str) -> Any:
        raise ConfigError(message)

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        if status:
            raise ConfigError((message or "").strip())
        raise EarlyExit()


def _parser_for(field: dataclasses.Field) -> Callable[[str], Any]:
    return field.metadata.get("parse") or _PARSERS[field.type]


def _converter(field: dataclasses.Field) -> Callable[[str], Any]:
    parse = _parser_for(field)

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return convert


def _argument_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="git-sync",
        description="Sync a git repository into a directory, like kubernetes/git-sync v4.",
        epilog="$GITSYNC_PASSWORD (environment only): the password or token for git HTTP "
               "authentication.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=__version__)
    for field in dataclasses.fields(Options):
        if field.metadata.get("env_only"):
            continue
        names = [flag_name(field)]
        if "short" in field.metadata:
            names.insert(0, "-" + field.metadata["short"])
        extra: dict[str, Any] = {"metavar": _METAVARS[field.type]}
        if field.type is bool:
            extra.update(nargs="?", const=True)
        elif "const" in field.metadata:
            extra.update(nargs="?", const=field.metadata["const"])
        parser.add_argument(
            *names,
            dest=field.name,
            type=_converter(field),
            default=argparse.SUPPRESS,
            help=f"{field.metadata['help']} (${env_name(field)}, default {shown_default(field)})",
            **extra,
        )
    return parser


def _finish(opts: Options) -> Options:
    """Validate, and derive what upstream derives (the link name, credentials in the URL)."""
    if not opts.repo:
        raise ConfigError("required flag: --repo must be specified")
    if not opts.root:
        raise ConfigError("required flag: --root must be specified")
    if not opts.ref:
        raise ConfigError("required flag: --ref must not be empty")
    if opts.depth < 0:
        raise ConfigError("invalid flag: --depth must be greater than or equal to 0")
    if opts.period < 0.01:
        raise ConfigError("invalid flag: --period must be at least 10ms")
    if opts.sync_timeout < 0.01:
        raise ConfigError("invalid flag: --sync-timeout must be at least 10ms")
    if opts.git_gc not in GC_MODES:
        raise ConfigError("invalid flag: --git-gc must be one of " + ", ".join(GC_MODES))
    opts = _move_url_credentials(opts)
    if not opts.username and (opts.password or opts.password_file):
        raise ConfigError("invalid flag: $GITSYNC_PASSWORD and --password-file need --username")
    if opts.password and opts.password_file:
        raise ConfigError("invalid flag: only one of $GITSYNC_PASSWORD and --password-file "
                          "may be specified")
    if not opts.link:
        leaf = opts.repo.rstrip("/").rsplit("/", 1)[-1]
        opts = dataclasses.replace(opts, link=leaf.removesuffix(".git") or leaf)
    return opts


def _move_url_credentials(opts: Options) -> Options:
    """Move `user:password@` out of an http(s) --repo, so git never sees it in a URL."""
    parts = urlsplit(opts.repo)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return opts
    userinfo, _, hostport = parts.netloc.rpartition("@")
    if opts.username:
        raise ConfigError("invalid flag: --repo may not contain credentials when --username "
                          "is specified")
    user, has_password, password = userinfo.partition(":")
    return dataclasses.replace(
        opts,
        repo=urlunsplit(parts._replace(netloc=hostport)),
        username=unquote(user),
        password=unquote(password) if has_password else opts.password,
    )
