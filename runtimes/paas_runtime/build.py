"""Turning a revision into a plan to run: its runtime, its command, its built environment."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import BuildFailed
from .python import PythonRuntime
from .settings import Settings
from .static import StaticRuntime
from .strategy import Runtime
from .watcher import Revision

log = logging.getLogger(__name__)

#: Detection order matters: a Python app may well ship an index.html.
RUNTIMES: dict[str, Runtime] = {r.name: r for r in (PythonRuntime(), StaticRuntime())}

_PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+)\s*:\s*(.+)$")


@dataclass(frozen=True)
class Plan:
    """Everything needed to start (and restart) one revision's app."""

    revision: Revision
    runtime: str
    command: str
    env: dict[str, str]


def choose_runtime(name: str | None, worktree: Path) -> Runtime:
    if name is not None:
        return RUNTIMES[name]
    for runtime in RUNTIMES.values():
        if runtime.detect(worktree):
            return runtime
    raise BuildFailed(
        "cannot tell the runtime: no requirements.txt, pyproject.toml or index.html; "
        f"set PAAS_RUNTIME to one of {', '.join(RUNTIMES)}"
    )


def procfile_command(worktree: Path, process_type: str = "web") -> str | None:
    """The Procfile's command for ``process_type``, if the revision has one."""
    try:
        text = (worktree / "Procfile").read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        match = _PROCFILE_LINE.match(line.strip())
        if match and match.group(1) == process_type:
            return match.group(2).strip()
    return None


async def prepare(revision: Revision, settings: Settings) -> Plan:
    """Choose the runtime and command for ``revision`` and build it; raises BuildFailed."""
    worktree = revision.path
    runtime = choose_runtime(settings.runtime, worktree)
    command = settings.run or procfile_command(worktree) or runtime.default_command(worktree)
    log.info("building %s (%s): %s", revision.hash, runtime.name, command)
    try:
        env = await runtime.build(worktree, command, settings.cache_dir, settings.app_env)
    except OSError as e:  # an unwritable cache, a full disk
        raise BuildFailed(f"build failed: {e}") from e
    return Plan(revision=revision, runtime=runtime.name, command=command, env=env)
