"""Flags and `GITSYNC_*` environment variables, named and meant as in upstream git-sync v4.

Each option is one field of `Options`: the field name gives the flag
(`sync_timeout` -> `--sync-timeout`) and the environment variable
(`GITSYNC_SYNC_TIMEOUT`), its annotation the value type. Adding an upstream
flag is one line here plus the code that uses it. A flag on the command line
wins over its environment variable, which wins over the default.

v3 spellings are still read, with a warning, as upstream reads them: the
`GIT_SYNC_*` variables, and `--branch`, `--rev`, `--dest`, `--wait`,
`--timeout`, `--max-sync-failures`, `--sync-hook-command`, `--ssh`, `--v`.
"""

import argparse
import dataclasses
import json
import re
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from git_sync import __version__, gitconfig
from git_sync.auth import Credential

ENV_PREFIX = "GITSYNC_"
LEGACY_ENV_PREFIX = "GIT_SYNC_"
GC_MODES = ("auto", "always", "aggressive", "off")
SUBMODULE_MODES = ("recursive", "shallow", "off")
DEFAULT_SSH_KEY_FILE = "/etc/git-secret/ssh"


class ConfigError(Exception):
    """A flag or environment variable is missing, unknown or malformed."""


class EarlyExit(Exception):
    """`--help`, `--man` or `--version` has printed its answer; exit 0."""


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
    """An integer as Go's strconv.ParseInt(s, 0, 0) reads it: 0x1f, 0o17, 0b1 and 0775 too."""
    digits = text.lstrip("+-")
    try:
        if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
            return int(text.replace(digits, "0o" + digits[1:], 1), 0)
        return int(text, 0)
    except ValueError:
        raise ValueError(f"invalid integer {text!r}") from None


def parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"invalid number {text!r}") from None


def parse_signal(text: str) -> signal.Signals:
    """A signal by number (`1`), name (`SIGHUP`) or short name (`HUP`), as upstream."""
    try:
        return signal.Signals(parse_int(text))
    except ValueError:
        pass
    name = text.upper()
    for candidate in (name, "SIG" + name):
        if candidate in signal.Signals.__members__:
            return signal.Signals[candidate]
    raise ValueError(f"invalid signal {text!r} (want a name such as SIGHUP, or a number)")


def parse_path_list(text: str) -> list[str]:
    """A `PATH`-like list: how upstream reads a repeatable flag from the environment."""
    return [part for part in text.split(":") if part]


_CREDENTIAL_KEYS = {"url", "username", "password", "password-file"}


def parse_credentials(text: str) -> list[Credential]:
    """`--credential`'s JSON: one object or a list of them (upstream's schema, no other keys)."""
    text = text.strip()
    if not text:
        return []
    if not text.startswith(("{", "[")):
        raise ValueError("not a JSON object or list")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON: {e.msg}") from None
    found = []
    for item in data if isinstance(data, list) else [data]:
        if not isinstance(item, dict) or not all(isinstance(v, str) for v in item.values()):
            raise ValueError("each credential must be an object of strings")
        unknown = set(item) - _CREDENTIAL_KEYS
        if unknown:
            raise ValueError(f"unknown field {sorted(unknown)[0]!r}")
        found.append(Credential(item.get("url", ""), item.get("username", ""), item.get("password", ""),
                                item.get("password-file", "")))
    return found


_PARSERS: dict[Any, Callable[[str], Any]] = {str: str, int: parse_int, bool: parse_bool,
                                             float: parse_float}
_METAVARS = {str: "STRING", int: "INT", bool: "BOOL", float: "DURATION", list[str]: "STRING",
             list[Credential]: "JSON"}


def flag(default: Any, help: str, **meta: Any) -> Any:
    """Declare an option.

    `meta`: parse (text -> value), shown (the default as written), short (one-letter
    alias), env_only, const (value of the bare flag), choices, legacy_env (older
    variable names; default `GIT_SYNC_<NAME>`, none for options new in v4),
    deprecated (the advice printed when a v3 flag is used).
    """
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default),
                                 metadata={"help": help, "shown": ":".join(default), **meta})
    return dataclasses.field(default=default, metadata={"help": help, **meta})


def duration(default: str, help: str, **meta: Any) -> Any:
    return flag(parse_duration(default), help, parse=parse_duration, shown=default, **meta)


@dataclass(frozen=True)
class Options:
    # What to sync, and where.
    repo: str = flag("", "the git repository to sync (required)")
    ref: str = flag("HEAD", "the git revision (branch, tag, annotated tag or full commit hash) "
                            "to sync; HEAD is the remote's default branch", legacy_env=())
    root: str = flag("", "the root directory for git-sync operations, under which --link is "
                         "created (required)")
    link: str = flag("", "the symlink (absolute, or relative to --root) to the synced "
                         "worktree; defaults to the last path element of --repo")
    depth: int = flag(1, "fetch this many commits of history; 0 fetches all of it")
    filter: str = flag("", "an object filter for a partial clone (e.g. blob:none); what it "
                           "leaves out is fetched when a checkout needs it", legacy_env=())
    submodules: str = flag("recursive", "git submodule behaviour: "
                                        + ", ".join(SUBMODULE_MODES),
                           choices=SUBMODULE_MODES)
    # When to sync.
    period: float = duration("10s", "how long to wait between syncs, at least 10ms")
    init_period: float = duration("0s", "how long to wait between attempts until the first "
                                        "sync succeeds; 0: --period", legacy_env=())
    sync_timeout: float = duration("120s", "the total time allowed for one sync, at least 10ms")
    max_failures: int = flag(0, "consecutive sync failures allowed before exiting non-zero; "
                                "negative retries forever")
    init_max_failures: int = flag(0, "consecutive failures allowed before the first sync "
                                     "succeeds; 0: --max-failures, negative retries forever",
                                  legacy_env=())
    one_time: bool = flag(False, "sync once, then exit 0 (or non-zero if it failed)")
    sync_on_signal: str = flag("", "sync at once on this signal (name such as SIGHUP, or "
                                   "number); empty: signals don't sync")
    stale_worktree_timeout: float = duration(
        "0s", "how long to keep a worktree after the link moved away from it; 0 removes it "
              "at once", legacy_env=())
    # Telling others.
    touch_file: str = flag("", "a file (absolute, or relative to --root) to touch whenever "
                               "a sync publishes a commit")
    error_file: str = flag("", "a file (absolute, or relative to --root) holding the last "
                               "error, removed after a successful sync")
    exechook_command: str = flag("", "a command (no arguments) to run in the new worktree, "
                                     "with $GITSYNC_HASH set, after each new commit is "
                                     "published; retried until it exits 0")
    exechook_timeout: float = duration("30s", "the time allowed for one --exechook-command run")
    exechook_backoff: float = duration("3s", "how long to wait before retrying a failed "
                                             "--exechook-command")
    webhook_url: str = flag("", "a URL to call, with header Gitsync-Hash, after each new "
                                "commit is published; retried until it succeeds")
    webhook_method: str = flag("POST", "the HTTP method of the --webhook-url call")
    webhook_success_status: int = flag(200, "the HTTP status that means the webhook "
                                            "succeeded; 0: fire and forget")
    webhook_timeout: float = duration("1s", "the time allowed for one --webhook-url call")
    webhook_backoff: float = duration("3s", "how long to wait before retrying a failed "
                                            "--webhook-url call")
    pre_publish_exechook_command: str = flag(
        "", "a command (no arguments) started in the new worktree, with $GITSYNC_HASH set, "
            "right before the link moves to it; retried until it exits 0, not waited for",
        legacy_env=())
    pre_publish_exechook_timeout: float = duration(
        "30s", "the time allowed for one --pre-publish-exechook-command run", legacy_env=())
    pre_publish_exechook_backoff: float = duration(
        "3s", "how long to wait before retrying a failed --pre-publish-exechook-command",
        legacy_env=())
    # GitHub app authentication: accepted and checked as upstream does, but not used.
    github_base_url: str = flag("https://api.github.com/", "the GitHub base URL for GitHub app "
                                                           "authentication (not supported here)",
                                legacy_env=())
    github_app_private_key_file: str = flag("", "the private key file for GitHub app "
                                                "authentication (not supported here)", legacy_env=())
    github_app_private_key: str = flag("", "the private key for GitHub app authentication "
                                           "(not supported here)", env_only=True, legacy_env=())
    github_app_client_id: str = flag("", "the GitHub app client ID (not supported here)",
                                     legacy_env=())
    github_app_application_id: int = flag(0, "the GitHub app application ID (not supported "
                                             "here)", legacy_env=())
    github_app_installation_id: int = flag(0, "the GitHub app installation ID (not supported "
                                              "here)", legacy_env=())
    # Authentication.
    username: str = flag("", "the username for git HTTP authentication")
    password: str = flag("", "the password or token for git HTTP authentication", env_only=True)
    credential: list[Credential] = flag(
        [], "one or more credentials for specific URLs (e.g. of submodules), as a JSON object "
            '{"url", "username", "password" or "password-file"} or a list of them; repeatable',
        parse=parse_credentials, legacy_env=(), shown="[]")
    askpass_url: str = flag("", "a URL to query for git credentials (username=<value> and "
                                "password=<value> lines) before every sync",
                            legacy_env=("GIT_SYNC_ASKPASS_URL", "GIT_ASKPASS_URL"))
    cookie_file: bool = flag(False, "use a git cookie file (/etc/git-secret/cookie_file) for "
                                    "authentication",
                             legacy_env=("GIT_SYNC_COOKIE_FILE", "GIT_COOKIE_FILE"))
    password_file: str = flag("", "a file holding the password or token for git HTTP "
                                  "authentication, read before every sync")
    ssh_key_file: list[str] = flag(
        [DEFAULT_SSH_KEY_FILE], "an SSH private key for git over SSH; repeat the flag for "
                                 "more keys (the variable is a colon-separated list)",
        parse=parse_path_list, legacy_env=("GIT_SYNC_SSH_KEY_FILE", "GIT_SSH_KEY_FILE"))
    ssh_known_hosts: bool = flag(True, "verify SSH host keys against --ssh-known-hosts-file",
                                 legacy_env=("GIT_SYNC_KNOWN_HOSTS", "GIT_KNOWN_HOSTS"))
    ssh_known_hosts_file: str = flag(
        "/etc/git-secret/known_hosts", "the known_hosts file for git over SSH",
        legacy_env=("GIT_SYNC_SSH_KNOWN_HOSTS_FILE", "GIT_SSH_KNOWN_HOSTS_FILE"))
    # git itself.
    git: str = flag("git", "the git command to run (subject to PATH search, mostly for testing)")
    git_config: str = flag("", "extra git config, as comma-separated key:value pairs "
                               "(quote a key holding a colon)")
    git_gc: str = flag("always", "git garbage collection after a change: " + ", ".join(GC_MODES),
                       choices=GC_MODES)
    sparse_checkout_file: str = flag("", "a git sparse-checkout file: which files and directories "
                                         "to check out")
    # The process.
    group_write: bool = flag(False, "make everything written (repository, worktrees, link) "
                                    "group-writable")
    add_user: bool = flag(False, "add a record for the running uid/gid to /etc/passwd "
                                 "(for SSH under an arbitrary uid)")
    http_bind: str = flag("", "the address (HOST:PORT or :PORT) for the HTTP endpoint; "
                              "empty: no HTTP endpoint")
    http_metrics: bool = flag(False, "serve Prometheus metrics at /metrics (needs --http-bind)")
    http_pprof: bool = flag(False, "serve debug endpoints (thread stacks) at /debug/pprof/ "
                                   "(needs --http-bind)")
    verbose: int = flag(0, "log at this level and below: 0 events, 1 git commands, "
                           "2 no-op syncs, HTTP requests and hook output", short="v", const=1,
                      legacy_env=())


@dataclass(frozen=True)
class _Deprecated:
    """A v3 flag: read, and folded into its v4 option by `_apply_deprecated`."""

    name: str
    type: Any
    env: str
    advice: str


_DEPRECATED = (
    _Deprecated("branch", str, "GIT_SYNC_BRANCH", "use --ref instead"),
    _Deprecated("rev", str, "GIT_SYNC_REV", "use --ref instead"),
    _Deprecated("dest", str, "GIT_SYNC_DEST", "use --link instead"),
    _Deprecated("wait", float, "GIT_SYNC_WAIT", "use --period instead"),
    _Deprecated("timeout", int, "GIT_SYNC_TIMEOUT", "use --sync-timeout instead"),
    _Deprecated("max_sync_failures", int, "GIT_SYNC_MAX_SYNC_FAILURES",
                "use --max-failures instead"),
    _Deprecated("sync_hook_command", str, "GIT_SYNC_HOOK_COMMAND",
                "use --exechook-command instead"),
    _Deprecated("change_permissions", int, "GIT_SYNC_PERMISSIONS", "use --group-write instead"),
    _Deprecated("ssh", bool, "GIT_SYNC_SSH", "no longer necessary"),
    _Deprecated("password", str, "", "use --password-file or $GITSYNC_PASSWORD instead"),
    _Deprecated("v", int, "", "use -v or --verbose instead"),
)


def flag_name(field: dataclasses.Field) -> str:
    return "--" + field.name.replace("_", "-")


def env_name(field: dataclasses.Field) -> str:
    return ENV_PREFIX + field.name.upper()


def legacy_env_names(field: dataclasses.Field) -> tuple[str, ...]:
    return field.metadata.get("legacy_env", (LEGACY_ENV_PREFIX + field.name.upper(),))


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


def describe_deprecated() -> Iterator[tuple[str, str, str]]:
    """(flag, legacy env var or "", advice) for every v3 flag still accepted."""
    for old in _DEPRECATED:
        yield "--" + old.name.replace("_", "-"), old.env, old.advice


def parse(argv: Sequence[str], environ: Mapping[str, str],
          warnings: list[str] | None = None) -> Options:
    """Options from `argv` (flags) over `environ` (`GITSYNC_*`) over the defaults.

    Deprecation notices are appended to `warnings`, for the caller to log.
    """
    warnings = [] if warnings is None else warnings
    given = vars(_argument_parser().parse_args(argv))
    values: dict[str, Any] = {}
    for field in dataclasses.fields(Options):
        found = _from_environment(environ, env_name(field), legacy_env_names(field),
                                  _parser_for(field), warnings)
        if field.name == "credential":  # $GITSYNC_CREDENTIAL first, then each --credential
            found = [*(found or []), *(c for value in given.get("credential", []) for c in value)]
        elif field.name in given and (given[field.name] or not field.metadata.get("env_only")):
            found = given[field.name]  # a hidden --__env__NAME flag counts only if not empty
        if found is not None:
            values[field.name] = found
    old = {d.name: given[d.name] for d in _DEPRECATED if d.name in given}
    for d in _DEPRECATED:
        if d.name in old:
            warnings.append(f"Flag --{d.name.replace('_', '-')} has been deprecated, {d.advice}")
        elif d.env:
            found = _from_environment(environ, d.env, (), _PARSERS[d.type], warnings)
            if found is not None:
                old[d.name] = found
    return _finish(_apply_deprecated(values, old, warnings))


def _from_environment(environ: Mapping[str, str], name: str, legacy: tuple[str, ...],
                      parse: Callable[[str], Any], warnings: list[str]) -> Any:
    """The parsed value of the first non-empty variable among `name` and `legacy`, or None."""
    for candidate in (name, *legacy):
        text = environ.get(candidate)
        if not text:
            continue
        if candidate != name:
            warnings.append(f"env ${candidate} has been deprecated, use ${name} instead")
        try:
            return parse(text)
        except ValueError as e:
            raise ConfigError(f"${candidate}: {e}") from None
    return None


def _apply_deprecated(values: dict[str, Any], old: dict[str, Any],
                      warnings: list[str]) -> dict[str, Any]:
    """Fold v3 flags into their v4 options, in upstream's order and with its precedence."""
    branch, rev = old.get("branch", ""), old.get("rev", "")
    if branch and rev not in ("", "HEAD"):
        raise ConfigError("deprecated flag combo: can't set --ref from deprecated --branch and --rev "
                          "(one or the other is OK)")
    if branch:
        warnings.append("setting --ref from deprecated --branch")
        values["ref"] = branch
    elif rev:
        warnings.append("setting --ref from deprecated --rev")
        values["ref"] = rev
    if old.get("dest"):
        warnings.append("setting --link from deprecated --dest")
        values["link"] = old["dest"]
    if old.get("wait"):
        warnings.append("setting --period from deprecated --wait")
        values["period"] = int(old["wait"] * 1000) / 1000
    if old.get("timeout"):
        warnings.append("setting --sync-timeout from deprecated --timeout")
        values["sync_timeout"] = float(old["timeout"])
    if old.get("max_sync_failures"):
        warnings.append("setting --max-failures from deprecated --max-sync-failures")
        values["max_failures"] = old["max_sync_failures"]
    if old.get("sync_hook_command"):
        warnings.append("setting --exechook-command from deprecated --sync-hook-command")
        values["exechook_command"] = old["sync_hook_command"]
    if old.get("change_permissions"):
        raise ConfigError("deprecated flag: --change-permissions is no longer supported")
    if "v" in old and old["v"] >= 0:
        values["verbose"] = old["v"]
    if old.get("password"):
        warnings.append("setting $GITSYNC_PASSWORD from deprecated --password")
        values["password"] = old["password"]
    return values


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so the caller picks the exit code."""

    def error(self, message: str) -> Any:
        raise ConfigError(message)

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        if status:
            raise ConfigError((message or "").strip())
        raise EarlyExit()


class _ManAction(argparse.Action):
    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any) -> None:
        from git_sync.manual import manual

        print(manual(), end="")
        parser.exit()


def _parser_for(field: dataclasses.Field) -> Callable[[str], Any]:
    parse = field.metadata.get("parse") or _PARSERS[field.type]
    choices = field.metadata.get("choices")
    if not choices:
        return parse

    def one_of(text: str) -> Any:
        if text not in choices:
            raise ValueError(f"invalid value {text!r} (want one of {', '.join(choices)})")
        return text

    return one_of


def _converter(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return convert


def _argument_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="git-sync",
        description="Sync a git repository into a directory, like kubernetes/git-sync v4. "
                    "`git-sync --man` prints the manual.",
        epilog="$GITSYNC_PASSWORD (environment only): the password or token for git HTTP "
               "authentication.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("--man", action=_ManAction, help="print the full manual and exit")
    parser.add_argument("-?", action="help", help=argparse.SUPPRESS)
    for field in dataclasses.fields(Options):
        if field.metadata.get("env_only"):
            # As upstream: a hidden flag for tests that sets an environment-only setting.
            parser.add_argument(f"--__env__{env_name(field)}", dest=field.name, default=argparse.SUPPRESS,
                                help=argparse.SUPPRESS)
            continue
        names = [flag_name(field)]
        if "short" in field.metadata:
            names.insert(0, "-" + field.metadata["short"])
        parse = field.metadata.get("parse") if field.type == list[str] else None
        extra: dict[str, Any] = {"metavar": _METAVARS[field.type]}
        if field.type is bool:
            extra.update(nargs="?", const=True)
        elif field.type == list[str]:
            extra.update(action="append")
            parse = str
        elif field.type == list[Credential]:
            extra.update(action="append")
            parse = parse_credentials
        elif "const" in field.metadata:
            extra.update(nargs="?", const=field.metadata["const"])
        parser.add_argument(
            *names,
            dest=field.name,
            type=_converter(parse or _parser_for(field)),
            default=argparse.SUPPRESS,
            help=f"{field.metadata['help']} (${env_name(field)}, default {shown_default(field)})",
            **extra,
        )
    for old in _DEPRECATED:
        extra = {"nargs": "?", "const": True} if old.type is bool else {}
        parser.add_argument("--" + old.name.replace("_", "-"), dest=old.name,
                            type=_converter(_PARSERS[old.type]), default=argparse.SUPPRESS,
                            help=argparse.SUPPRESS, **extra)
    return parser


def _finish(values: dict[str, Any]) -> Options:
    """Validate as upstream does, and derive what it derives (the link, URL credentials)."""
    opts = Options(**values)
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
    if opts.init_period and opts.init_period < 0.01:
        raise ConfigError("invalid flag: --init-period must be 0 or at least 10ms")
    if opts.sync_timeout < 0.01:
        raise ConfigError("invalid flag: --sync-timeout must be at least 10ms")
    if opts.stale_worktree_timeout < 0:
        raise ConfigError("invalid flag: --stale-worktree-timeout must not be negative")
    if opts.sync_on_signal:
        try:
            parse_signal(opts.sync_on_signal)
        except ValueError:
            raise ConfigError("invalid flag: --sync-on-signal must be a valid signal name "
                              "or number") from None
    for hook in ("exechook", "pre_publish_exechook"):
        if getattr(opts, f"{hook}_command"):
            for setting in ("timeout", "backoff"):
                if getattr(opts, f"{hook}_{setting}") < 1:
                    raise ConfigError(f"invalid flag: --{hook.replace('_', '-')}-{setting} must be at least 1s")
    if opts.webhook_url:
        if opts.webhook_success_status == -1:  # v3 spelling of fire-and-forget
            opts = dataclasses.replace(opts, webhook_success_status=0)
        if opts.webhook_success_status < 0:
            raise ConfigError("invalid flag: --webhook-success-status must be a valid HTTP "
                              "code or 0")
        if opts.webhook_timeout < 1:
            raise ConfigError("invalid flag: --webhook-timeout must be at least 1s")
        if opts.webhook_backoff < 1:
            raise ConfigError("invalid flag: --webhook-backoff must be at least 1s")
    for needs_bind in ("http_metrics", "http_pprof"):
        if getattr(opts, needs_bind) and not opts.http_bind:
            raise ConfigError(f"required flag: --http-bind must be specified when "
                              f"--{needs_bind.replace('_', '-')} is set")
    opts = _move_url_credentials(opts)
    try:
        gitconfig.parse(opts.git_config)
    except ValueError as e:
        raise ConfigError(f"invalid flag: --git-config: {e}") from None
    if opts.username:
        if not (opts.password or opts.password_file):
            raise ConfigError("required flag: $GITSYNC_PASSWORD or --password-file must be "
                              "specified when --username is specified")
        if opts.password and opts.password_file:
            raise ConfigError("invalid flag: only one of $GITSYNC_PASSWORD and --password-file "
                              "may be specified")
    elif opts.password:
        raise ConfigError("invalid flag: $GITSYNC_PASSWORD may only be specified when "
                          "--username is specified")
    elif opts.password_file:
        raise ConfigError("invalid flag: --password-file may only be specified when --username "
                          "is specified")
    for cred in opts.credential:
        if not cred.url:
            raise ConfigError("invalid flag: --credential URL must be specified")
        if not cred.username:
            raise ConfigError("invalid flag: --credential username must be specified")
        if not (cred.password or cred.password_file):
            raise ConfigError("invalid flag: --credential password or password-file must be "
                              "specified")
        if cred.password and cred.password_file:
            raise ConfigError("invalid flag: only one of --credential password and password-file "
                              "may be specified")
    _check_github_app(opts)
    if not opts.link:
        opts = dataclasses.replace(opts, link=opts.repo.strip("/").rsplit("/", 1)[-1])
    return opts


def _move_url_credentials(opts: Options) -> Options:
    """Move `user:password@` out of an http(s) --repo, so git never sees it in a URL."""
    parts = urlsplit(opts.repo)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return opts
    userinfo, _, hostport = parts.netloc.rpartition("@")
    if opts.username:
        raise ConfigError("invalid flag: credentials may not be specified in --repo when "
                          "--username is specified")
    user, has_password, password = userinfo.partition(":")
    return dataclasses.replace(
        opts,
        repo=urlunsplit(parts._replace(netloc=hostport)),
        username=unquote(user),
        password=unquote(password) if has_password else opts.password,
    )


def _check_github_app(opts: Options) -> None:
    """Upstream's checks of the GitHub app flags, word for word (the flags are not used here)."""
    key = opts.github_app_private_key or opts.github_app_private_key_file
    if opts.github_app_application_id or opts.github_app_client_id:
        if opts.github_app_application_id and opts.github_app_client_id:
            raise ConfigError("invalid flag: only one of --github-app-application-id or "
                              "--github-app-client-id may be specified")
        if not opts.github_app_installation_id:
            raise ConfigError("invalid flag: --github-app-installation-id must be specified when "
                              "--github-app-application-id or --github-app-client-id are specified")
        if not key:
            raise ConfigError("invalid flag: $GITSYNC_GITHUB_APP_PRIVATE_KEY or "
                              "--github-app-private-key-file must be specified when "
                              "--github-app-application-id or --github-app-client-id are specified")
        if opts.github_app_private_key and opts.github_app_private_key_file:
            raise ConfigError("invalid flag: only one of $GITSYNC_GITHUB_APP_PRIVATE_KEY or "
                              "--github-app-private-key-file may be specified")
        for given, name in ((opts.username, "--username"), (opts.password, "--password"),
                            (opts.password_file, "--password-file")):
            if given:
                raise ConfigError(f"invalid flag: {name} may not be specified when "
                                  "--github-app-private-key-file is specified")
    elif opts.github_app_installation_id:
        raise ConfigError("invalid flag: --github-app-installation-id may only be specified when "
                          "--github-app-private-key-file is specified")


def github_app_configured(opts: Options) -> bool:
    return bool((opts.github_app_application_id or opts.github_app_client_id)
                and opts.github_app_installation_id)


def is_ssh_url(url: str) -> bool:
    """Whether git reaches `url` over SSH: `ssh://…`, `git+ssh://…` or scp-like `[user@]host:path`."""
    scheme, sep, _ = url.partition("://")
    if sep:
        return scheme in ("ssh", "git+ssh", "ssh+git")
    host, colon, _ = url.partition(":")
    return bool(colon) and "/" not in host and bool(host)
