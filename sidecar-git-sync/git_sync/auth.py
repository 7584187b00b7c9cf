"""Credentials for git, kept out of URLs, argv and logs.

Over HTTP, git gets the secret from a credential helper defined in its
environment (GIT_CONFIG_COUNT/KEY/VALUE) that prints environment variables
with the shell's builtin `printf`: the password is in no command line (so not
in /proc/<pid>/cmdline of any child) and in no file. Upstream feeds the same
entries to `git credential approve` into git's credential cache daemon; an
environment set per command needs no daemon and leaves nothing behind. Over SSH, git runs the
`ssh` command built by `ssh_command` with the configured keys.
"""

import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from git_sync import gitconfig
from git_sync.errors import SyncError

_COUNT_VAR = "_GITSYNC_CRED_COUNT"
_ORIGIN_VAR, _USERNAME_VAR, _PASSWORD_VAR = "_GITSYNC_CRED_ORIGIN_", "_GITSYNC_CRED_USERNAME_", "_GITSYNC_CRED_PASSWORD_"

# Answers only `get`, and only for the scheme://host[:port] of an entry, so a redirect to
# another host never receives a secret. Entries are tried newest first: as with upstream's
# `git credential approve` into a cache, a later entry for the same origin wins. `printf`
# is the shell's builtin and `printenv` is given variable names, so no value is in argv.
_HELPER = (
    '!f() { test "$1" = get || return 0; p=; h=; '
    'while IFS= read -r l; do case "$l" in '
    'protocol=*) p=${l#protocol=};; host=*) h=${l#host=};; esac; done; '
    f'i=${{{_COUNT_VAR}:-0}}; while [ "$i" -gt 0 ]; do i=$((i - 1)); '
    f'if [ "$p://$h" = "$(printenv {_ORIGIN_VAR}$i)" ]; then '
    f'printf "username=%s\\npassword=%s\\n" "$(printenv {_USERNAME_VAR}$i)" "$(printenv {_PASSWORD_VAR}$i)"; '
    'return 0; fi; done; }; f'
)

_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
ASKPASS_TIMEOUT = 1.0  # as upstream


def redact(text: str) -> str:
    """`text` with the userinfo of every URL in it replaced by `REDACTED`."""
    return _USERINFO.sub(r"\g<scheme>REDACTED@", text)


class CredentialError(SyncError):
    """A password file could not be read, or the askpass URL gave no credentials."""


@dataclass(frozen=True)
class Credential:
    """A username and password (or a file holding it) for the URLs of `url`'s origin."""

    url: str
    username: str
    password: str = field(default="", repr=False)
    password_file: str = ""

    def read(self) -> str:
        """The password; a password file is read now, so a rotated secret is picked up."""
        if not self.password_file:
            return self.password
        try:
            with open(self.password_file, encoding="utf-8") as f:
                return f.read().rstrip("\r\n")
        except OSError as e:
            raise CredentialError(f"can't read password file {self.password_file!r}: {e.strerror}") from None


@dataclass
class Credentials:
    """Every credential git may need, refreshed before every sync: `--username` with its
    password for --repo, then each `--credential`, then what `--askpass-url` answers."""

    repo: str
    entries: list[Credential]
    askpass_url: str = ""
    on_askpass: Callable[[str], None] = lambda status: None

    def __bool__(self) -> bool:
        return bool(self.entries or self.askpass_url)

    def git_env(self, environ: Mapping[str, str]) -> dict[str, str]:
        """Variables to add to `environ` for a git command that talks to a remote."""
        entries = [(c, c.read()) for c in self.entries]
        if self.askpass_url:
            entries.append(self._askpass())
        env = gitconfig.extend(environ, [
            ("credential.helper", ""),  # forget the user's helpers: ours alone answers
            ("credential.helper", _HELPER),
        ])
        env[_COUNT_VAR] = str(len(entries))
        for i, (cred, password) in enumerate(entries):
            parts = urlsplit(cred.url)
            env[f"{_ORIGIN_VAR}{i}"] = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
            env[f"{_USERNAME_VAR}{i}"] = cred.username
            env[f"{_PASSWORD_VAR}{i}"] = password
        return env

    def _askpass(self) -> tuple[Credential, str]:
        """Ask --askpass-url (a GET, 1 s, redirects not followed) for username= and password=."""
        import urllib.error  # only when asked for: http.client is a good part of an idle sidecar
        import urllib.request

        class _NoRedirects(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object, **kwargs: object) -> None:
                return None

        opener = urllib.request.build_opener(_NoRedirects)
        try:
            with opener.open(self.askpass_url, timeout=ASKPASS_TIMEOUT) as response:
                status, body = response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read().decode("utf-8", "replace")
        except (OSError, ValueError) as e:
            self.on_askpass("error")
            raise CredentialError(f"credential refresh failed: can't access auth URL: {e}") from None
        if status != 200:
            self.on_askpass("error")
            raise CredentialError(f"credential refresh failed: auth URL returned status {status}, body: {body!r}")
        fields = dict(line.split("=", 1) for line in body.split("\n") if "=" in line)
        self.on_askpass("success")
        return Credential(self.repo, fields.get("username", "")), fields.get("password", "")


def scrub_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for git children: no secrets of ours, nothing that redirects git."""
    hidden = {"GITSYNC_PASSWORD", "GIT_SYNC_PASSWORD", "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE",
              "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR",
              "GIT_NAMESPACE"}
    env = {k: v for k, v in environ.items() if k not in hidden}
    env["GIT_TERMINAL_PROMPT"] = "0"  # fail with a message rather than wait for a terminal
    return env


class SSHConfigError(SyncError):
    """A key or known_hosts file needed for git over SSH is missing."""


def ssh_command(
    key_files: Sequence[str],
    known_hosts: bool,
    known_hosts_file: str,
    required: bool,
    default_key_files: Sequence[str] = (),
) -> str:
    """The `GIT_SSH_COMMAND` upstream builds: its host-key checking and `-i` per key.

    With `required` (--repo is an SSH URL) a missing file is an error, except a
    default key that was never asked for; otherwise missing keys are left out.
    """
    keys = []
    for path in key_files:
        if os.access(path, os.R_OK):
            keys.append(path)
        elif required and path not in default_key_files:
            raise SSHConfigError(f"can't access SSH key file {path}")
    if known_hosts:
        if required and not os.access(known_hosts_file, os.R_OK):
            raise SSHConfigError(f"can't access SSH known_hosts file {known_hosts_file} "
                                 "(or set --ssh-known-hosts=false)")
        args = ["ssh", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts_file}"]
    else:
        args = ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    for key in keys:
        args += ["-i", key]
    return shlex.join(args)
