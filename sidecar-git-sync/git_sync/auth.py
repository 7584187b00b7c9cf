"""Credentials for git over HTTP, kept out of URLs, argv and logs.

git gets the secret from a credential helper defined in its environment
(GIT_CONFIG_COUNT/KEY/VALUE) that prints environment variables with the shell's
builtin `printf`: the password is in no command line (so not in
/proc/<pid>/cmdline of any child) and in no file.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

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
        env = _config_env(environ, [
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


def _config_env(environ: Mapping[str, str], config: list[tuple[str, str]]) -> dict[str, str]:
    """`git -c key=value` as environment variables, after any the caller already set."""
    start = int(environ.get("GIT_CONFIG_COUNT", "0") or "0")
    env = {"GIT_CONFIG_COUNT": str(start + len(config))}
    for i, (key, value) in enumerate(config, start):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def scrub_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for git children: no secrets of ours, nothing that redirects git."""
    hidden = {"GITSYNC_PASSWORD", "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE",
              "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR",
              "GIT_NAMESPACE"}
    env = {k: v for k, v in environ.items() if k not in hidden}
    env["GIT_TERMINAL_PROMPT"] = "0"  # fail with a message rather than wait for a terminal
    return env
