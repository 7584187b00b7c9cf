"""Writing a config version into the shared volume, atomically as git-sync publishes code.

`$PAAS_CONFIG_DIR` is a symlink to `.paas-config/<version>/`, a directory holding that
version's `config.json` (`{"KEY": "value", …}`) and `env` (`KEY='value'` lines, quoted for a
POSIX shell, so `. "$PAAS_CONFIG_DIR/env"` works). A new version is written whole into a
directory of its own, then a new symlink is renamed over the old: a reader sees the old pair
of files or the new one, never a mix. Older versions are removed but for the one before.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path

VERSIONS = ".paas-config"


def write(link: Path, version: int, variables: dict[str, str]) -> Path:
    """Publish ``variables`` as ``version`` at ``link``; the version's directory."""
    store = link.parent / VERSIONS
    target = store / str(version)
    staging = store / f".{version}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    (staging / "config.json").write_text(json.dumps(variables, indent=2, sort_keys=True) + "\n")
    (staging / "env").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in sorted(variables.items())))
    for file in staging.iterdir():
        file.chmod(0o644)
    staging.chmod(0o755)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(target, link.parent), tmp)
    os.replace(tmp, link)
    _keep(store, {str(version), *_previous(store, version)})
    return target


def current(link: Path) -> int | None:
    """The version `link` points at now, if any."""
    try:
        return int(os.path.basename(os.readlink(link)))
    except (OSError, ValueError):
        return None


def _previous(store: Path, version: int) -> list[str]:
    older = sorted((int(p.name) for p in store.iterdir() if p.name.isdigit() and int(p.name) < version), reverse=True)
    return [str(v) for v in older[:1]]


def _keep(store: Path, names: set[str]) -> None:
    for path in store.iterdir():
        if path.name not in names:
            shutil.rmtree(path, ignore_errors=True)
