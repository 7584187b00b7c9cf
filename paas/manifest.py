"""The app manifest: parsed from YAML or JSON, validated, every problem reported at once."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from paas import sidecars
from paas.errors import InvalidManifest
from paas.names import APP_NAME_RULE, is_app_name, is_host_name

MAX_MANIFEST_BYTES = 64 * 1024
RUNTIMES = ("python", "node", "static")

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED_ENV = re.compile(r"^(PORT|PAAS_.*|GITSYNC_.*)$")
# Transports git would accept that reach outside the network (ext::, file://, local paths)
# are refused: a manifest must not make the platform run commands or read its own disk.
_REMOTE_URL = re.compile(r"^(https?|ssh|git)://[^\s/]+/\S+$")
_SCP_URL = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s:][^\s]*$")
_MEMORY = re.compile(r"^[1-9][0-9]*[bkmg]?$")
_BAD_REF = re.compile(r"(^[-/.]|\.\.|[\x00-\x20\x7f~^:?*\[\\]|@\{|//|/\.|\.lock$|\.lock/|[/.]$)")


def variable_name_problem(name: object) -> str | None:
    """Why ``name`` can't name one of an app's environment variables (the manifest's `env`,
    `paas config`), or None."""
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        return f"{name!r} is not a valid environment variable name"
    if _RESERVED_ENV.fullmatch(name):
        return f"{name} is set by the platform"
    return None


def text_problem(text: str) -> str | None:
    """Why ``text`` can't reach a process (its environment, its command line, a file name),
    or None: every string of a manifest and every config value ends up in one of those, where
    a NUL ends it early (or fails the exec) and an unpaired surrogate can't be encoded."""
    if "\0" in text:
        return "holds a NUL byte, which an environment variable or a command line can't hold"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 (it holds an unpaired surrogate)"
    return None


def is_git_ref(ref: str) -> bool:
    """A plausible branch, tag or commit name (git check-ref-format rules, checked without git)."""
    return bool(ref) and len(ref) <= 255 and ref != "@" and not _BAD_REF.search(ref)


def _repo_problem(url: str) -> str | None:
    """Why ``url`` can't be a source repo, or None."""
    if not (_REMOTE_URL.fullmatch(url) or _SCP_URL.fullmatch(url)):
        return "must be a remote git URL (https://, http://, ssh://, git:// or user@host:path)"
    if _SCP_URL.fullmatch(url):
        user, _, rest = url.partition("@")
        host, _, path = rest.partition(":")
        parts = {"user": user, "host": host, "path": path}
    else:
        split = urlsplit(url)
        parts = {"user": split.username or "", "host": split.hostname or "", "path": split.path.lstrip("/")}
        try:
            split.port  # noqa: B018 - raises for a port that isn't one
        except ValueError:
            return "must have a port number of at most 65535 after the host, or none"
        if split.password is not None and split.scheme not in ("http", "https"):
            return "may carry a password only in an http(s) URL (ssh authenticates with a key)"
    for what, text in parts.items():
        if text.startswith("-"):
            return f"must not have a {what} starting with '-' (git would take it for an option)"
    return None


def split_password(url: str) -> tuple[str, str]:
    """``https://user:password@host/p`` -> (``https://user@host/p``, ``password``)."""
    split = urlsplit(url)
    if split.scheme not in ("http", "https") or split.password is None:
        return url, ""
    netloc = split.netloc.rpartition("@")[2]
    user = split.netloc.rpartition("@")[0].partition(":")[0]
    return urlunsplit(split._replace(netloc=f"{user}@{netloc}" if user else netloc)), split.password


def with_masked_password(url: str) -> str:
    """The URL a person is shown when a password is kept apart: ``https://user:***@host/p``."""
    split = urlsplit(url)
    user, _, host = split.netloc.rpartition("@")
    return urlunsplit(split._replace(netloc=f"{user}:***@{host}"))


def without_user(url: str) -> tuple[str, str]:
    """``https://user@host/p`` -> (``https://host/p``, ``user``); other URLs are unchanged."""
    split = urlsplit(url)
    if split.scheme not in ("http", "https") or "@" not in split.netloc:
        return url, ""
    user, _, host = split.netloc.rpartition("@")
    return urlunsplit(split._replace(netloc=host)), user


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repo: str | None = None
    ref: str = "main"
    period: Annotated[float, Field(gt=0, le=86400)] = 10
    # Whether a push may delete or move a tag of the hosted repository (branches never can).
    tags: Literal["immutable", "mutable"] = "immutable"
    # A password given in ``repo`` (user:password@), taken out of it: never stored in the
    # manifest, never shown.
    _password: str = PrivateAttr(default="")

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str | None) -> str | None:
        if value is not None and (problem := _repo_problem(value)):
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _keep_password_apart(self) -> Source:
        if self.repo:
            self.repo, self._password = split_password(self.repo)
        return self

    @property
    def password(self) -> str:
        return self._password

    @property
    def username(self) -> str:
        """The user of an http(s) repo URL (``https://user@host/…``), if it names one."""
        return without_user(self.repo)[1] if self.repo else ""

    @property
    def clone_url(self) -> str | None:
        """The repo URL without credentials, as git-sync is given it."""
        return without_user(self.repo)[0] if self.repo else None

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str) -> str:
        if not is_git_ref(value):
            raise ValueError("must be a branch, tag or commit")
        return value


class Healthcheck(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = "/"
    timeout: Annotated[int, Field(ge=1, le=600)] = 30

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or any(c.isspace() for c in value):
            raise ValueError("must be a URL path starting with '/'")
        return value


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")

    memory: str | None = None
    cpus: Annotated[float, Field(gt=0, le=256)] | None = None

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if value is not None and not (isinstance(value, str) and _MEMORY.fullmatch(value)):
            raise ValueError("must be a size such as 256m or 1g (bytes, k, m or g)")
        return value


RELOADS = ("restart", "signal", "webhook", "none")
_VOLUME_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,28}[a-z0-9])?$")
# Where a volume may not go: the pod's own volume and the platform's files.
_RESERVED_PATHS = ("/workspace", "/etc/paas", "/proc", "/sys", "/dev")


class Config(BaseModel):
    """How the app learns of a change of its config variables (`paas config set`)."""

    model_config = ConfigDict(extra="forbid")

    reload: Literal["restart", "signal", "webhook", "none"] = "restart"
    signal: str = "SIGHUP"  # with reload: signal, sent to the app's main process
    webhook: str = "/-/reload"  # with reload: webhook, POSTed to on the app's own port

    @field_validator("signal")
    @classmethod
    def _signal(cls, value: str) -> str:
        name = value.upper() if value.upper().startswith("SIG") else f"SIG{value.upper()}"
        if name not in signal.Signals.__members__ or name in ("SIGKILL", "SIGSTOP"):
            raise ValueError("must be a signal name such as SIGHUP or SIGUSR1")
        return name

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, value: str) -> str:
        if not value.startswith("/") or any(c.isspace() for c in value):
            raise ValueError("must be a URL path starting with '/'")
        return value


def _volume_problem(name: str, path: str) -> str | None:
    if not _VOLUME_NAME.fullmatch(name):
        return f"{name!r} is not a volume name (lowercase letters, digits and '-', 1-30 characters)"
    if not isinstance(path, str) or not path.strip() or any(c in path for c in "\0\n"):
        return f"{name}: the path must be a directory path, absolute or relative to the app's root"
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts or not parts:
        return f"{name}: the path {path!r} must not be the root or go up with '..'"
    if path.startswith("/") and any(path == r or path.startswith(r + "/") for r in _RESERVED_PATHS):
        return f"{name}: {path} is the platform's; pick another path"
    if parts[0] == ".git":
        return f"{name}: {path} is git's"
    return None


class Https(BaseModel):
    """What the https sidecar does besides TLS (`sidecars: [https]`)."""

    model_config = ConfigDict(extra="forbid")

    redirect: bool = False  # plain HTTP answered with 308 to https://
    hsts: Annotated[int, Field(ge=0, le=63072000)] = 0  # Strict-Transport-Security max-age, seconds


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    runtime: Literal["python", "node", "static"] | None = None
    source: Source = Field(default_factory=Source)
    run: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    port: Annotated[int, Field(ge=1024, le=65535)] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    healthcheck: Healthcheck = Field(default_factory=Healthcheck)
    sidecars: list[str] = Field(default_factory=list)
    decline_sidecars: list[str] = Field(default_factory=list)
    config: Config = Field(default_factory=Config)
    volumes: dict[str, str] = Field(default_factory=dict)
    resources: Resources | None = None
    # Host names the router serves the app at besides APP.<domain>; its certificate covers them.
    hosts: list[str] = Field(default_factory=list)
    https: Https | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not is_app_name(value):
            raise ValueError(f"must be {APP_NAME_RULE}")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        problems = []
        for key, item in value.items():
            if problem := variable_name_problem(key):
                problems.append(problem)
            elif isinstance(item, dict | list) or item is None:
                problems.append(f"{key} must be a string, number or boolean")
        if problems:
            raise ValueError("; ".join(problems))
        return {k: env_str(v) for k, v in value.items()}

    @field_validator("sidecars", "decline_sidecars")
    @classmethod
    def _sidecars(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in sidecars.REGISTRY:
                raise ValueError(f"unknown sidecar {name!r}; available: {sidecars.available()}")
        if len(set(value)) != len(value):
            raise ValueError("lists a sidecar twice")
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        bad = [h for h in value if not is_host_name(h)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a host name (lowercase DNS labels joined by '.')")
        if len(set(value)) != len(value):
            raise ValueError("lists a host name twice")
        if len(value) > 20:
            raise ValueError("at most 20 host names")
        return value

    @model_validator(mode="after")
    def _https_needs_sidecar(self) -> Manifest:
        if self.https is not None and "https" in self.decline_sidecars:
            raise ValueError("https: settings take effect through the https sidecar, which decline_sidecars declines")
        return self

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, value: dict[str, str]) -> dict[str, str]:
        problems = [p for name, path in value.items() if (p := _volume_problem(name, path))]
        if len(value) > 10:
            problems.append("at most 10 volumes")
        paths = [path.strip("/") for path in value.values()]
        if len(set(paths)) != len(paths):
            problems.append("two volumes at the same path")
        if problems:
            raise ValueError("; ".join(problems))
        return {name: path.rstrip("/") for name, path in value.items()}

    @property
    def hosted(self) -> bool:
        """True when the platform hosts the repo (push-to-deploy) rather than polling a remote."""
        return self.source.repo is None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def env_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _field_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        shown = str(part) if str(part).isprintable() else repr(part)  # a key holding a NUL, a newline
        path += f".{shown}" if path else shown
    return path or "manifest"


def _unfit_strings(data: Any, loc: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    """(field path, problem) of each string value in ``data`` no process could be given."""
    if isinstance(data, str):
        if problem := text_problem(data):
            yield loc, problem
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _unfit_strings(value, (*loc, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _unfit_strings(value, (*loc, index))


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind == "literal_error":
        return f"must be one of {error['ctx']['expected']}"
    message = error["msg"]
    return message[0].lower() + message[1:]


def validate(data: Any) -> Manifest:
    """Validate already-parsed data; raise InvalidManifest listing every problem with its path."""
    if not isinstance(data, dict):
        raise InvalidManifest("the manifest must be a mapping of fields (name, runtime, source, …)")
    # Where a string no process can take is, that is what is wrong with the field.
    unfit = {_field_path(loc): problem for loc, problem in _unfit_strings(data)}
    details = [f"{path}: {problem}" for path, problem in unfit.items()]
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as e:
        found = ((_field_path(err["loc"]), _message(err)) for err in e.errors())
        details += [f"{path}: {message}" for path, message in found if path not in unfit]
    if details:
        raise InvalidManifest(f"invalid manifest: {'; '.join(details)}", details)
    return manifest


def lenient(data: Any) -> Manifest:
    """A stored manifest that no longer validates, with its offending fields at their defaults."""
    fields = dict(data) if isinstance(data, dict) else {}
    for _ in range(len(fields) + 1):
        try:
            return Manifest.model_validate(fields)
        except ValidationError as e:
            bad = {err["loc"][0] for err in e.errors() if err["loc"]} - {"name"}
            if not bad:
                break
            for key in bad:
                fields.pop(key, None)
    return Manifest.model_construct(name=str(fields.get("name", "")))


def parse(text: str | bytes) -> Manifest:
    """Parse a manifest from YAML or JSON text."""
    if len(text) > MAX_MANIFEST_BYTES:
        raise InvalidManifest(f"the manifest is larger than {MAX_MANIFEST_BYTES // 1024} KiB")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidManifest("the manifest is not UTF-8 text") from None
    try:
        data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise InvalidManifest(f"the manifest is not valid JSON: line {e.lineno}: {e.msg}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or "cannot be parsed"
        raise InvalidManifest(f"the manifest is not valid YAML: {where}{problem}") from None
    except RecursionError:
        raise InvalidManifest("the manifest is nested too deeply") from None
    except ValueError as e:  # a value the parser can't build: a 13th month, a number of over 4300 digits
        reason = str(e).split(";")[0]  # not Python's advice that follows (sys.set_int_max_str_digits)
        raise InvalidManifest(f"the manifest has a value that can't be read: {reason}") from None
    return validate(data)
