"""git configuration for every git command git-sync runs.

As upstream, git-sync writes its configuration (upstream's defaults, then
--git-config) into a private global config file of its own and points
`GIT_CONFIG_GLOBAL` at it, with the system file ignored: a user's
`~/.gitconfig` cannot change how git-sync behaves, and the settings reach every
git process, also the `git upload-pack` that git's local transports (a path or
`file://` repository) start with `GIT_CONFIG_COUNT`/`GIT_CONFIG_PARAMETERS`
cleared — which is how `safe.directory=*` reaches a repository owned by another
uid on a shared volume. Per-command settings that must not sit in a file (the
credential helper) still go through `GIT_CONFIG_COUNT`.
"""

import atexit
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence

# Upstream's defaults, which --git-config may override.
DEFAULTS: tuple[tuple[str, str], ...] = (
    ("gc.autoDetach", "false"),  # gc runs inside the sync, never behind its back
    ("gc.pruneExpire", "now"),
    ("safe.directory", "*"),  # a volume may belong to another uid
)

_ESCAPES = {"n": "\n", "t": "\t", '"': '"', ",": ",", "\\": "\\"}


def parse(text: str) -> list[tuple[str, str]]:
    """`key:value,…` pairs as upstream's --git-config reads them.

    Keys and values may be quoted; `\\n \\t \\" \\, \\\\` are understood in quoted
    keys and in all values. A key holding a colon must be quoted; an unquoted
    value must escape its commas. Raises ValueError with the offending key.
    """
    chars = list(text)
    chars.reverse()  # pop() from the end reads left to right
    pairs = []
    while chars:
        if chars[-1] == '"':
            chars.pop()
            key = _quoted(chars)
            if not chars or chars.pop() != ":":
                raise ValueError(f"key {key!r}: expected ':' after the quoted key")
        else:
            key = _until(chars, ":", escapes=False)
            if key is None:
                raise ValueError(f"unexpected end of key: {''.join(reversed(chars))!r}")
        if not chars:
            raise ValueError(f"key {key!r}: no value")
        try:
            if chars[-1] == '"':
                chars.pop()
                value = _quoted(chars)
                if chars and chars.pop() != ",":
                    raise ValueError("expected ',' after the quoted value")
            else:
                value = _until(chars, ",", escapes=True) or ""
        except ValueError as e:
            raise ValueError(f"key {key!r}: {e}") from None
        pairs.append((key, value))
    return pairs


def _until(chars: list[str], end: str, escapes: bool) -> str | None:
    """Characters up to (and consuming) `end`; None if `end` never came and it matters."""
    out = []
    while chars:
        c = chars.pop()
        if c == end:
            return "".join(out)
        out.append(_unescape(chars) if escapes and c == "\\" else c)
    if end == ":":
        chars.extend(reversed(out))  # put back for the error message
        return None
    return "".join(out)


def _quoted(chars: list[str]) -> str:
    out = []
    while chars:
        c = chars.pop()
        if c == '"':
            return "".join(out)
        out.append(_unescape(chars) if c == "\\" else c)
    raise ValueError(f"unexpected end of quoted string: {''.join(out)!r}")


def _unescape(chars: list[str]) -> str:
    if not chars:
        raise ValueError("unexpected end of escape sequence")
    c = chars.pop()
    if c not in _ESCAPES:
        raise ValueError(f"unsupported escape character: {c!r}")
    return _ESCAPES[c]


def private_global(git: str, pairs: Sequence[tuple[str, str]], environ: Mapping[str, str]) -> dict[str, str]:
    """Write `pairs` into a new private global config file (`git config --file`, so git does
    the quoting); the variables that make git read it as its only configuration besides
    the repository's. Raises OSError if it can't be written."""
    directory = tempfile.mkdtemp(prefix="git-sync-config-")  # mode 0700, only ours
    atexit.register(shutil.rmtree, directory, True)
    path = os.path.join(directory, "gitconfig")
    open(path, "x").close()
    env = {**environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": path}
    for key, value in pairs:
        done = subprocess.run([git, "config", "--file", path, "--add", key, value], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if done.returncode != 0:
            raise OSError(f"git config {key}: {done.stderr.strip() or done.returncode}")
    return {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": path}


def extend(environ: Mapping[str, str], pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Variables adding `pairs` after whatever `environ` already passes the same way."""
    start = int(environ.get("GIT_CONFIG_COUNT", "0") or "0")
    env = {"GIT_CONFIG_COUNT": str(start + len(pairs))}
    for i, (key, value) in enumerate(pairs, start):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env
