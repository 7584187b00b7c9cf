"""Asking a remote repository (an app's ``source.repo``) what its ref points at.

The control plane believes a revision a remote-source pod reports serving only if the
remote vouches for it. Credentials reach git through a credential helper reading the
environment, never through the URL or the command line.
"""

from __future__ import annotations

import os
import subprocess

from paas.manifest import Source

TIMEOUT = 15.0
_HELPER = '!f() { test "$1" = get && printf "username=%s\\npassword=%s\\n" "$PAAS_GIT_USER" "$PAAS_GIT_PASSWORD"; }; f'


def head(source: Source, password: str = "") -> set[str]:
    """The commits ``source.ref`` names on the remote (a branch, a tag and its peeled commit);
    empty if the remote can't be asked."""
    if not source.clone_url:
        return set()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
    }
    if password:
        env |= {
            "PAAS_GIT_USER": source.username or "git",
            "PAAS_GIT_PASSWORD": password,
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "credential.helper",
            "GIT_CONFIG_VALUE_0": _HELPER,
        }
    try:
        out = subprocess.run(
            ["git", "ls-remote", "--", source.clone_url, source.ref, f"{source.ref}^{{}}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired):
        return set()
    found = {line.split()[0] for line in out.stdout.splitlines() if line.strip()}
    ref = source.ref.lower()
    if len(ref) >= 7 and all(c in "0123456789abcdef" for c in ref):
        found.add(ref)  # a commit pinned by hash: the ref itself (git-sync checks it exists)
    return found
