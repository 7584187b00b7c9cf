"""The node runtime: one ``node_modules`` per package.json + lockfile, shared through the cache.

Layout under ``PAAS_CACHE_DIR``::

    npm/                             npm's own cache (tarballs), shared by every build
    node/<key> -> .<key16>.<rnd>     the published install (a symlink, as for venvs)
    node/.<key16>.<rnd>/             package.json, the lockfile, .npmrc and node_modules/

``key`` is a sha256 over package.json, the lockfile, .npmrc and the node
version (native addons are built for one), so a revision that leaves its
dependencies alone reuses the install as it is.

The install is made visible to the app by a ``node_modules`` symlink in the
revision's snapshot pointing at the cached ``node_modules``. Node resolves a
bare ``require('x')`` or ``import 'x'`` by walking up from the importing
file's directory looking into ``node_modules``, and a module inside the
cache resolves its own dependencies from its real path, so the one link
serves CommonJS and ES modules alike; ``npm start`` and npm scripts find
the packages' commands in ``node_modules/.bin``. ``NODE_PATH`` would not
do: ES modules ignore it, and so does npm's ``.bin`` lookup.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from . import cache, files, process, progress
from .errors import BuildFailed
from .handoff import NODE_ADAPTER
from .strategy import Runtime

log = logging.getLogger(__name__)

LOCKFILES = ("npm-shrinkwrap.json", "package-lock.json")
#: Files copied into the install directory: all npm needs, and all the key covers.
INPUTS = ("package.json", *LOCKFILES, ".npmrc")
NPM_FLAGS = ("--no-audit", "--no-fund", "--update-notifier=false", "--prefer-offline")


class NodeRuntime(Runtime):
    name = "node"

    def __init__(self) -> None:
        self._versions: dict[str, str] = {}

    def detect(self, worktree: Path) -> bool:
        return (worktree / "package.json").is_file()

    def default_command(self, worktree: Path) -> str:
        return "npm start"

    async def build(
        self, worktree: Path, command: str, cache_dir: Path, env: Mapping[str, str]
    ) -> dict[str, str]:
        path = env.get("PATH", os.defpath)
        node, npm = shutil.which("node", path=path), shutil.which("npm", path=path)
        if node is None or npm is None:
            raise BuildFailed(
                "the node runtime needs node and npm, and this image has "
                f"{'neither' if node is None and npm is None else 'no ' + ('node' if node is None else 'npm')}"
                " (use the paas-runtime-node image)"
            )
        _check_package_json(worktree)

        app_env = dict(env)
        app_env.setdefault("NPM_CONFIG_UPDATE_NOTIFIER", "false")
        app_env.setdefault("NPM_CONFIG_FUND", "false")
        own = worktree / "node_modules"
        if os.path.lexists(own):
            progress.say("dependencies: the revision brings its own node_modules, not installing")
        else:
            inputs = {name: data for name in INPUTS if (data := files.read(worktree, name)) is not None}
            key = _key(inputs, await self._node_version(node, env))
            installed = cache_dir / "node" / key
            listed = ", ".join(inputs) or "package.json"
            if installed.is_dir():
                progress.say(f"dependencies: {listed} unchanged, reusing node_modules {key[:12]}")
            else:
                progress.say(f"dependencies: npm ci from {listed} into node_modules {key[:12]}")
                await _install(installed, inputs, npm, cache_dir / "npm", env)
            # Point at the build itself, not the published name: a later rebuild
            # under that name must not change what a running instance sees.
            os.symlink(os.path.realpath(installed / "node_modules"), own)
        app_env["PATH"] = os.pathsep.join([str(own / ".bin"), path])
        # The handoff adapter (paas_runtime.handoff) is loaded into every node process.
        require = f'--require "{NODE_ADAPTER}"'
        app_env["NODE_OPTIONS"] = f"{env['NODE_OPTIONS']} {require}" if env.get("NODE_OPTIONS") else require
        return app_env

    async def _node_version(self, node: str, env: Mapping[str, str]) -> str:
        if node not in self._versions:
            code, out = await process.run([node, "--version"], Path("/"), env, echo=False)
            self._versions[node] = out.strip() if code == 0 else node
        return self._versions[node]


def _check_package_json(worktree: Path) -> None:
    try:
        data = json.loads(files.checked(worktree, "package.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BuildFailed(f"package.json cannot be read: {e}") from e
    if not isinstance(data, dict):
        raise BuildFailed("package.json must hold a JSON object")


def _key(inputs: Mapping[str, bytes], node_version: str) -> str:
    digest = hashlib.sha256()
    for part in (node_version.encode(), *(p for name in INPUTS for p in (name.encode(), inputs.get(name, b"")))):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


async def _install(
    path: Path, inputs: Mapping[str, bytes], npm: str, npm_cache: Path, env: Mapping[str, str]
) -> None:
    """``npm ci`` (or ``npm install`` without a lockfile) in a new directory, then publish it."""

    async def fill(build: Path) -> None:
        os.chmod(build, 0o755)
        for name, data in inputs.items():
            (build / name).write_bytes(data)
        verb = "ci" if any(name in inputs for name in LOCKFILES) else "install"
        argv = [npm, verb, *NPM_FLAGS, "--cache", str(npm_cache)]
        code, tail = await process.run(argv, build, env)
        if code != 0:
            raise BuildFailed(f"npm {verb} exited with code {code}\n{tail}")
        # A package without dependencies gets no node_modules; the link needs a target.
        (build / "node_modules").mkdir(exist_ok=True)

    await cache.build_once(path, fill, "node_modules")
