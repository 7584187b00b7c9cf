"""The static runtime: serve the revision's files as they are.

Its default command is this module run as a script: a threading HTTP/1.1
file server for its working directory (the revision's snapshot, so one
instance serves one revision whole and the switch between revisions is the
proxy's). A directory is answered with its ``index.html`` (and ``/dir`` is
redirected to ``/dir/``), never with a listing; anything else missing is a
404, with the revision's own ``404.html`` as the page if it has one. Dot-paths
(``.git``, ``.env``) are not content, and neither is anything a symlink
leads to outside the revision. Content types come from a table of the web's
usual types, so they do not depend on the image's ``/etc/mime.types``.
"""

from __future__ import annotations

import mimetypes
import os
import posixpath
import shlex
import sys
from collections.abc import Mapping
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from . import files
from .strategy import Runtime

_UTF8 = "; charset=utf-8"
CONTENT_TYPES = {
    ".html": "text/html" + _UTF8,
    ".htm": "text/html" + _UTF8,
    ".css": "text/css" + _UTF8,
    ".js": "text/javascript" + _UTF8,
    ".mjs": "text/javascript" + _UTF8,
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain" + _UTF8,
    ".md": "text/markdown" + _UTF8,
    ".csv": "text/csv" + _UTF8,
    ".xml": "application/xml",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".wasm": "application/wasm",
    ".pdf": "application/pdf",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mp3": "audio/mpeg",
}
NOT_FOUND_PAGE = "404.html"


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


class Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every answer has a Content-Length
    #: Seconds an idle kept-alive connection is held (a thread each), as Node's default.
    timeout = 5

    def version_string(self) -> str:
        return "paas-static"

    def log_error(self, format: str, *args: object) -> None:
        if not format.startswith("Request timed out"):  # an idle keep-alive ending, not an error
            super().log_error(format, *args)

    def __init__(self, *args, directory: str, **kwargs) -> None:
        self._root = os.path.realpath(directory)
        super().__init__(*args, directory=directory, **kwargs)

    def send_head(self):
        path = unquote(urlsplit(self.path).path)
        if any(part.startswith(".") for part in path.split("/") if part):
            return self._not_found()
        fs_path = self.translate_path(self.path)
        if not self._inside(fs_path):
            return self._not_found()
        if os.path.isdir(fs_path):
            if not path.endswith("/"):
                return super().send_head()  # the redirect to "dir/"
            index = os.path.join(fs_path, "index.html")
            if not os.path.isfile(index) or not self._inside(index):
                return self._not_found()  # no listings
        elif not os.path.isfile(fs_path):
            return self._not_found()
        return super().send_head()

    def guess_type(self, path: str) -> str:
        ext = posixpath.splitext(path)[1].lower()
        return CONTENT_TYPES.get(ext) or mimetypes.guess_type(path)[0] or "application/octet-stream"

    def _inside(self, fs_path: str) -> bool:
        return files.inside(self._root, fs_path)

    def _not_found(self):
        page = os.path.join(self._root, NOT_FOUND_PAGE)
        try:  # a link out of the revision is no page of its own
            f = open(page, "rb") if self._inside(page) else None  # noqa: SIM115 - copyfile() closes it
        except OSError:
            f = None
        if f is None:
            self.send_error(HTTPStatus.NOT_FOUND)
            return None
        self.send_response(HTTPStatus.NOT_FOUND)
        self.send_header("Content-Type", CONTENT_TYPES[".html"])
        self.send_header("Content-Length", str(os.fstat(f.fileno()).st_size))
        self.end_headers()
        return f


def serve(host: str, port: int, directory: str) -> None:
    handler = partial(Handler, directory=directory)
    with ThreadingHTTPServer((host, port), handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    serve(os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"]), os.getcwd())
