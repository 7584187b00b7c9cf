"""Credentials for git, kept out of URLs, argv and logs.

Over HTTP, git gets the secret from a credential helper defined in its
environment (GIT_CONFIG_COUNT/KEY/VALUE) that prints environment variables
with the shell's builtin `printf`: the password is in no command line (so not
in /proc/<pid>/cmdline of any child) and in no file. Over SSH, git runs the
`ssh` command built by `ssh_command` with the configured keys.
"""

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from git_sync import gitconfig
from git_sync.errors import SyncError

_USERNAME_VAR = "_GITSYNC_CRED_USERNAME"
_PASSWORD_VAR = "_GITSYNC_CRED_PASSWORD"
_ORIGIN_VAR = "_GITSYNC_CRED_ORIGIN"

# Answers only `get`, and only for the repo's own scheme://host[:port], so a
# redirect to another host never receives the secret.
_HELPER = (
    '!f() { test "$1" = get || return 0; p=; h=; '
    'while IFS= read -r l; do case "$l" in '
    'protocol=*) p=${l#protocol=};; host=*) h=${l#host=};; esac; done; '
    f'test "$p://$h" = "${_ORIGIN_VAR}" || return 0; '
    f'printf "username=%s\\npassword=%s\\n" "${_USERNAME_VAR}" "${_PASSWORD_VAR}"; '
    '}; f'
)

_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def redact(text: str) -> str:
    """`text` with the userinfo of every URL in it replaced by `REDACTED`."""
    return _USERINFO.sub(r"\g<scheme>REDACTED@", text)


class CredentialError(SyncError):
    """The password file could not be read."""


@dataclass(frozen=True)
class Credentials:
    """HTTP basic-auth credentials for one repository URL."""

    repo: str
    username: str
    password: str = ""
    password_file: str = ""

    def git_env(self, environ: Mapping[str, str]) -> dict[str, str]:
        """Variables to add to `environ` for a git command that talks to the remote.

        The password file is read here, before every sync, so a rotated secret
        is picked up without a restart.
        """
        parts = urlsplit(self.repo)
        env = gitconfig.extend(environ, [
            ("credential.helper", ""),  # forget the user's helpers: ours alone answers
            ("credential.helper", _HELPER),
        ])
        env[_ORIGIN_VAR] = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        env[_USERNAME_VAR] = self.username
        env[_PASSWORD_VAR] = self._read_password()
        return env

    def _read_password(self) -> str:
        if not self.password_file:
            return self.password
        try:
            with open(self.password_file, encoding="utf-8") as f:
                return f.read().rstrip("\r\n")
        except OSError as e:
            raise CredentialError(f"can't read --password-file: {e.strerror}: "
                                  f"{self.password_file}") from None


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
