"""The static runtime: serve the revision's files as they are.

Its default command is this module run as a script: a threading HTTP file
server for the working directory that refuses dot-paths (``.git`` and
friends are not content).
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from .strategy import Runtime


class StaticRuntime(Runtime):
    name = "static"

    def detect(self, worktree: Path) -> bool:
        return (worktree / "index.html").is_file()

    def default_command(self, worktree: Path) -> str:
        return f"{shlex.quote(sys.executable)} -m paas_runtime.static"

    async def build(
        self, worktree: Path, command: str, cache_dir: Path, env: Mapping[str, str]
    ) -> dict[str, str]:
        return dict(env)


class _Handler(SimpleHTTPRequestHandler):
    def send_head(self):
        path = unquote(self.path.split("?", 1)[0].split("#", 1)[0])
        if any(part.startswith(".") for part in path.split("/") if part):
            self.send_error(404)
            return None
        return super().send_head()


def serve(host: str, port: int, directory: str) -> None:
    handler = partial(_Handler, directory=directory)
    with ThreadingHTTPServer((host, port), handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    serve(os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"]), os.getcwd())
