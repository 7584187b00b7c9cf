"""A repository password goes only where it was given for.

A remote app's password (`https://user:password@host/…` in `source.repo`, or `--password-file`)
is stored apart from its manifest and handed to git-sync and to `git ls-remote`, which send
it to the repository's host. It is bound to the URL's origin — scheme, host, port and user —
as a browser binds credentials to an origin: a changed path keeps it (another repository of
the same account), but a `source.repo` that moves to another origin would send it to
whoever runs that host. Such an apply fails in one sentence asking for the new repository's
password (or for an empty one), and nothing is stored: failing is safer than applying
without it, which would replace a serving pod by one that can't sync.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from paas.errors import InvalidInput
from paas.manifest import Source

_DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22, "git": 9418}
# How the API takes a password given apart from the manifest (`--password-file`): percent-
# encoded as in a URL's userinfo, so any UTF-8 password fits in a header.
HEADER = "Paas-Repository-Password"


def origin(url: str) -> tuple[str, str, int | None, str]:
    """(scheme, host, port, user) of a repository URL (``user@host:path`` is ssh)."""
    split = urlsplit(url)
    if not split.scheme or "://" not in url:  # scp-like: user@host:path
        user, _, rest = url.rpartition("@")
        return "ssh", rest.partition(":")[0].lower(), _DEFAULT_PORTS["ssh"], user
    scheme = split.scheme.lower()
    return scheme, (split.hostname or "").lower(), split.port or _DEFAULT_PORTS.get(scheme), unquote(split.username or "")


def shown(url: str) -> str:
    """An origin as a person reads it: ``https://user@host:443``."""
    scheme, host, port, user = origin(url)
    return f"{scheme}://{user + '@' if user else ''}{host}{f':{port}' if port else ''}"


def decode(header: str) -> str:
    """The password an API request gives in HEADER; raises InvalidInput if it can't be one."""
    try:
        password = unquote(header, errors="strict")
    except UnicodeDecodeError:
        raise InvalidInput(f"{HEADER}: not a percent-encoded UTF-8 password") from None
    if any(ord(c) < 0x20 or c == "\x7f" for c in password):
        raise InvalidInput(f"{HEADER}: a password holds no control characters (a newline, a NUL)")
    return password


def password_for(new: Source, given: str | None = None, old_repo: str | None = None, old_password: str = "") -> str:
    """The password to keep for ``new``: the one it carries or was ``given`` with (``""``: none),
    else ``old_password`` where ``new.repo`` has the origin ``old_repo`` had; raises
    InvalidInput when the old one would follow the URL elsewhere, or ``given`` can't be used."""
    if given is not None:
        if new.repo is None:
            raise InvalidInput("a repository password is for a source.repo, and this manifest has none "
                               "(the app is deployed by push)")
        if new.password:
            raise InvalidInput("give the repository password once: in source.repo or with --password-file, not both")
        if given and origin(new.repo)[0] not in ("http", "https"):
            raise InvalidInput("source.repo: only an http(s) repository takes a password (ssh authenticates with a key)")
        return given
    if new.password or not old_password or not new.repo or not old_repo:
        return new.password
    if origin(new.repo) == origin(old_repo):
        return old_password
    scheme = origin(new.repo)[0]
    if scheme in ("http", "https"):
        how = ("give that repository's password (https://USER:PASSWORD@HOST/… or `paas apply --password-file "
               "FILE`), or an empty --password-file to apply without one")
    else:
        how = f"a repository reached by {scheme} takes no password: apply with an empty --password-file (/dev/null) to drop it"
    problem = f"source.repo: the stored repository password is for {shown(old_repo)} and is not sent to {shown(new.repo)}: {how}"
    raise InvalidInput(problem, [problem])
