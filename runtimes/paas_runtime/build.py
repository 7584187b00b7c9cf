"""Turning a revision into a plan to run: its runtime, its command, its built environment."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from . import files, progress, snapshot
from .errors import BuildFailed
from .live import Live
from .node import NodeRuntime
from .python import PythonRuntime
from .settings import Settings
from .static import StaticRuntime
from .strategy import Runtime
from .watcher import Revision

log = logging.getLogger(__name__)

#: Detection order matters: a Python app may well ship a package.json for its
#: front end, and any app may ship an index.html.
RUNTIMES: dict[str, Runtime] = {r.name: r for r in (PythonRuntime(), NodeRuntime(), StaticRuntime())}

_PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+)\s*:\s*(.+)$")


@dataclass(frozen=True, eq=False)
class Plan:
    """Everything needed to start (and restart) one revision's app."""

    revision: Revision
    #: Where the app runs: the revision's snapshot (or its worktree, if none could be taken).
    workdir: Path
    runtime: str
    command: str
    env: dict[str, str]
    #: The live settings it was built with (command, health check, environment, config).
    live: Live

    def discard(self) -> None:
        """Remove the snapshot once no instance of this plan can run again."""
        if self.workdir != self.revision.path:
            snapshot.remove(self.workdir)


def choose_runtime(name: str | None, worktree: Path) -> Runtime:
    if name is not None:
        return RUNTIMES[name]
    for runtime in RUNTIMES.values():
        if runtime.detect(worktree):
            return runtime
    if not any(entry.name != ".git" for entry in worktree.iterdir()):
        raise BuildFailed("the revision holds no files (an empty repository): commit the app's code and push it")
    raise BuildFailed(
        "cannot tell the runtime: no requirements.txt, pyproject.toml, package.json or "
        f"index.html; set runtime in the manifest (PAAS_RUNTIME) to one of {', '.join(RUNTIMES)}"
    )


def procfile_command(worktree: Path, process_type: str = "web") -> str | None:
    """The Procfile's command for ``process_type``, if the revision has one."""
    data = files.read(worktree, "Procfile")
    if data is None:
        return None
    for line in data.decode("utf-8", errors="replace").splitlines():
        match = _PROCFILE_LINE.match(line.strip())
        if match and match.group(1) == process_type:
            return match.group(2).strip()
    return None


async def prepare(revision: Revision, settings: Settings, live: Live) -> Plan:
    """Snapshot ``revision``, choose its runtime and command, and build it with the ``live``
    settings; raises BuildFailed."""
    workdir = await _snapshot(revision, settings)
    try:
        _link_volumes(workdir, settings.volume_links)
        runtime = choose_runtime(settings.runtime, workdir)
        progress.say(f"runtime {runtime.name} ({'as the manifest says' if settings.runtime else 'detected'})")
        command, source = _command(live.run, workdir, runtime)
        progress.say(f"command `{command}` ({source})")
        try:
            env = await runtime.build(workdir, command, settings.cache_dir, settings.app_env | live.app_env())
        except OSError as e:  # an unwritable cache, a full disk
            raise BuildFailed(f"build failed: {e}") from e
    except BaseException:
        if workdir != revision.path:
            snapshot.remove(workdir)
        raise
    return Plan(revision=revision, workdir=workdir, runtime=runtime.name, command=command, env=env, live=live)


def _link_volumes(workdir: Path, links: dict[str, str]) -> None:
    """Put each volume where the app expects it in its revision (a symlink to the volume)."""
    for path, target in links.items():
        place = workdir / path
        if os.path.lexists(place):
            raise BuildFailed(
                f"the revision has {path!r}, where a volume is linked: remove it from the repository "
                "(the volume keeps its files across deploys) or mount the volume elsewhere"
            )
        place.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, place)


def _command(run: str | None, workdir: Path, runtime: Runtime) -> tuple[str, str]:
    """The command to run, and where it came from."""
    if run:
        return run, "the manifest's run"
    procfile = procfile_command(workdir)
    if procfile:
        return procfile, "the Procfile's web:"
    return runtime.default_command(workdir), f"the {runtime.name} runtime's default"


async def _snapshot(revision: Revision, settings: Settings) -> Path:
    """The revision's private copy; its worktree itself if no copy can be made."""
    taking = asyncio.ensure_future(
        asyncio.to_thread(snapshot.take, revision.path, snapshot.root_for(settings.app_dir), revision.hash[:40])
    )
    try:
        return await asyncio.shield(taking)
    except asyncio.CancelledError:
        # The thread runs on regardless: remove what it makes once it is done.
        taking.add_done_callback(
            lambda t: None if t.cancelled() or t.exception() else snapshot.remove(t.result())
        )
        raise
    except FileNotFoundError as e:
        # git-sync removed the worktree already: a newer revision is on its way.
        raise BuildFailed(f"the worktree of {revision.hash} disappeared: {e}") from e
    except OSError as e:
        log.warning("cannot snapshot %s (%s); running it from its worktree", revision.hash, e)
        return revision.path
