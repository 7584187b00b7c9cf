"""The python runtime: one virtualenv per set of requirements, shared through the cache.

Layout under ``PAAS_CACHE_DIR``::

    pip/                           pip's download/wheel cache, shared by every build
    venvs/<key> -> .<key16>.<rnd>  the published venv (a symlink, see below)
    venvs/.<key16>.<rnd>/          the venv itself, built in place under a unique name

``key`` is a sha256 over requirements.txt, pyproject.toml, the interpreter,
any package the runtime adds (gunicorn) and the handoff adapter it adds (see
:mod:`paas_runtime.handoff`), so revisions that leave their requirements alone
start in a venv that is already there.

A venv cannot be renamed after pip has run (console scripts carry its absolute
path in their ``#!`` line), so it is built under its final, unique temporary
name and published with one atomic ``symlink(2)``: a supervisor sharing the
cache either sees no venv or a finished one, and of two racing builds the
second one's link fails and it uses the first.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import os
import re
import sys
import tomllib
import venv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import cache, files, process, progress
from .errors import BuildFailed
from .handoff import GUNICORN_ADAPTER
from .strategy import Runtime

log = logging.getLogger(__name__)

_GUNICORN = re.compile(r"\bgunicorn\b")
_NAMES_GUNICORN = re.compile(r"^\s*gunicorn\s*(?:[\[<>=!~;@#]|$)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Requirements:
    """What a revision asks pip for, as far as the venv's identity is concerned."""

    requirements_txt: bytes | None
    pyproject_toml: bytes | None
    pyproject_deps: tuple[str, ...]

    @classmethod
    def read(cls, worktree: Path) -> Requirements:
        req = files.read(worktree, "requirements.txt")  # pip reads it too, once it is known to be ours
        pyproject = files.read(worktree, "pyproject.toml")
        deps: tuple[str, ...] = ()
        if pyproject is not None:
            try:
                project = tomllib.loads(pyproject.decode()).get("project", {})
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
                raise BuildFailed(f"pyproject.toml is not valid TOML: {e}") from e
            deps = tuple(project.get("dependencies", ()))
        return cls(req, pyproject, deps)

    @property
    def source(self) -> str:
        """The files the dependencies come from, for a person to read."""
        return " and ".join(
            name
            for name, data in (("requirements.txt", self.requirements_txt), ("pyproject.toml", self.pyproject_toml))
            if data is not None
        )

    def names_gunicorn(self) -> bool:
        text = (self.requirements_txt or b"").decode("utf-8", "replace")
        return bool(_NAMES_GUNICORN.search(text)) or any(
            _NAMES_GUNICORN.search(dep) for dep in self.pyproject_deps
        )

    def key(self, extra: tuple[str, ...]) -> str:
        digest = hashlib.sha256()
        for part in (
            sys.version.encode(),
            sys.base_prefix.encode(),
            b"requirements.txt",
            self.requirements_txt or b"",
            b"pyproject.toml",
            self.pyproject_toml or b"",
            " ".join(extra).encode(),
            GUNICORN_ADAPTER.read_bytes(),
        ):
            digest.update(len(part).to_bytes(8, "big") + part)
        return digest.hexdigest()


class PythonRuntime(Runtime):
    name = "python"

    def detect(self, worktree: Path) -> bool:
        return (worktree / "requirements.txt").is_file() or (worktree / "pyproject.toml").is_file()

    def default_command(self, worktree: Path) -> str:
        return "gunicorn app:app"

    async def build(
        self, worktree: Path, command: str, cache_dir: Path, env: Mapping[str, str]
    ) -> dict[str, str]:
        requirements = Requirements.read(worktree)
        extra: tuple[str, ...] = ()
        if _GUNICORN.search(command) and not requirements.names_gunicorn():
            extra = ("gunicorn",)
        key = requirements.key(extra)
        venvs = cache_dir / "venvs"
        path = venvs / key
        what = requirements.source or "no requirements"
        if path.is_dir():
            progress.say(f"dependencies: {what} unchanged, reusing venv {key[:12]}")
        else:
            progress.say(f"dependencies: installing {what}{' and gunicorn' if extra else ''} into venv {key[:12]}")
            pip_cache = cache_dir / "pip"
            await cache.build_once(
                path, lambda build: _install(build, worktree, requirements, extra, pip_cache, env), "venv"
            )

        app_env = dict(env)
        app_env.pop("PYTHONHOME", None)
        app_env["VIRTUAL_ENV"] = str(path)
        app_env["PATH"] = os.pathsep.join([str(path / "bin"), env.get("PATH", os.defpath)])
        app_env.setdefault("PYTHONUNBUFFERED", "1")
        return app_env


async def _install(
    build: Path,
    worktree: Path,
    requirements: Requirements,
    extra: tuple[str, ...],
    pip_cache: Path,
    env: Mapping[str, str],
) -> None:
    # Without pip the venv takes ~0.2 s instead of seconds; our own pip installs into it.
    own_pip = importlib.util.find_spec("pip") is not None
    await asyncio.to_thread(venv.create, build, with_pip=not own_pip, symlinks=True)
    _add_adapter(build)
    python = str(build / "bin" / "python")
    pip = [sys.executable, "-m", "pip", "--python", python] if own_pip else [python, "-m", "pip"]

    packages: list[str] = []
    if requirements.requirements_txt is not None:
        packages += ["-r", "requirements.txt"]
    packages += [*requirements.pyproject_deps, *extra]
    if not packages:
        return
    argv = [
        *pip,
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "--cache-dir",
        str(pip_cache),
        *packages,
    ]
    code, tail = await process.run(argv, worktree, env)
    if code != 0:
        raise BuildFailed(f"pip install exited with code {code}\n{tail}")


def _add_adapter(venv_dir: Path) -> None:
    """Put the gunicorn handoff adapter in the venv, imported at start-up by a ``.pth`` file."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site_packages = venv_dir / "lib" / version / "site-packages"
    (site_packages / "_paas_handoff.py").write_bytes(GUNICORN_ADAPTER.read_bytes())
    (site_packages / "_paas_handoff.pth").write_text("import _paas_handoff\n")
