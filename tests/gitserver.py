"""Git servers for tests, on loopback: `git http-backend` behind basic auth, and `git daemon`.

    with GitServer(tmp_path, username="u", password="p") as server:
        subprocess.run(["git", "init", "--bare", server.root / "app.git"])
        url = server.url("app.git")   # http://127.0.0.1:PORT/app.git

    with GitDaemon(tmp_path) as daemon:
        url = daemon.url("app.git")   # git://127.0.0.1:PORT/app.git

Every bare repository under `root` is served. GitServer serves fetch and push
alike (push is enabled because requests are authenticated: http-backend sees
REMOTE_USER); with `username=None` no authentication is asked for. GitDaemon
serves fetch only, without authentication. `stop()` closes the port, which is
how a test takes the remote down; `start()` again reuses the port.

`Upstream` is a bare repository under either server plus a clone to commit
and push from.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote

from helpers import free_port, wait_for

# Variables that would point http-backend's git at some other repository.
_GIT_LOCATION_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                      "GIT_COMMON_DIR", "GIT_NAMESPACE")


class GitServer:
    def __init__(
        self,
        root: Path,
        username: str | None = "git",
        password: str | None = "git",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.root = Path(root)
        self.username = username
        self.password = password
        self.host = host
        self.port = port
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self.request_headers: list[dict[str, str]] = []  # in the same order
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def start(self) -> GitServer:
        handler = type("Handler", (_CGIHandler,), {"git_server": self})
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> GitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def authorized(self, header: str | None) -> str | None:
        """The authenticated user name, or None when the request must be refused."""
        if self.username is None:
            return "anonymous"
        scheme, _, encoded = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return None
        return user if (user, password) == (self.username, self.password) else None


class _CGIHandler(BaseHTTPRequestHandler):
    git_server: GitServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without TCP_NODELAY the body
    # waits for the client's delayed ACK (~40 ms per response).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        body = self._read_body()
        user = self.git_server.authorized(self.headers.get("Authorization"))
        if user is None:
            self._reply(401, [("WWW-Authenticate", 'Basic realm="git"')], b"unauthorized\n")
            return
        path, _, query = self.path.partition("?")
        env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS}
        env.update(
            GIT_PROJECT_ROOT=str(self.git_server.root),
            GIT_HTTP_EXPORT_ALL="1",
            REQUEST_METHOD=self.command,
            PATH_INFO=unquote(path),
            QUERY_STRING=query,
            CONTENT_TYPE=self.headers.get("Content-Type", ""),
            CONTENT_LENGTH=str(len(body)),
            REMOTE_USER=user,
            REMOTE_ADDR=self.client_address[0],
            GIT_PROTOCOL=self.headers.get("Git-Protocol", ""),
            HTTP_CONTENT_ENCODING=self.headers.get("Content-Encoding", ""),
        )
        proc = subprocess.run(["git", "http-backend"], input=body, env=env,
                              capture_output=True, check=False)
        status, headers, payload = _parse_cgi(proc.stdout)
        if proc.returncode and not proc.stdout:
            status, payload = 500, proc.stderr
        self._reply(status, headers, payload)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        self.git_server.requests.append((self.command, self.path, status))
        self.git_server.request_headers.append(dict(self.headers))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the requests list is the log


def _parse_cgi(output: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) from a CGI script's output."""
    separator = b"\r\n\r\n" if b"\r\n\r\n" in output else b"\n\n"
    head, _, body = output.partition(separator)
    status = 200
    headers = []
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name:
            headers.append((name.strip(), value.strip()))
    return status, headers, body


class GitDaemon:
    """`git daemon` exporting every repository under `root` (read-only, no auth)."""

    def __init__(self, root: Path, host: str = "127.0.0.1") -> None:
        self.root = Path(root)
        self.host = host
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"git://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def start(self) -> GitDaemon:
        env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS}
        self.port = self.port or free_port()
        self._proc = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", "--export-all", "--informative-errors",
             f"--base-path={self.root}", f"--listen={self.host}", f"--port={self.port}",
             str(self.root)],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        wait_for(self._accepting, timeout=10, what=f"git daemon on port {self.port}")
        return self

    def _accepting(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise AssertionError(f"git daemon exited: {self._proc.stderr.read().decode()}")
        with socket.socket() as probe:
            return probe.connect_ex((self.host, self.port)) == 0

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc.stderr.close()
        self._proc = None

    def __enter__(self) -> GitDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalRepos:
    """Bare repositories in a directory, reached by path (or `file://`): no server at all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def url(self, path: str) -> str:
        return str(self.root / path)


class Served(Protocol):
    root: Path

    def url(self, path: str) -> str: ...


# Commits made by tests: a fixed identity, and no user or system config.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV},
                            capture_output=True, text=True, check=True)
    return result.stdout.strip()


class Upstream:
    """A bare repository behind a server, and a clone to commit and push from."""

    def __init__(self, server: Served, name: str, workdir: Path) -> None:
        self.name = name
        self.bare = server.root / f"{name}.git"
        self.url = server.url(f"{name}.git")
        self.work = workdir
        git("init", "--quiet", "--bare", "--initial-branch=main", str(self.bare))
        git("init", "--quiet", "--initial-branch=main", str(self.work))
        git("remote", "add", "origin", str(self.bare), cwd=self.work)

    def commit(self, content: str, path: str = "index.html") -> str:
        """Commit `content` to `path` and (force-)push it to main; the new commit's hash."""
        (self.work / path).parent.mkdir(parents=True, exist_ok=True)
        (self.work / path).write_text(content)
        git("add", path, cwd=self.work)
        git("commit", "--quiet", "-m", content, cwd=self.work)
        git("push", "--quiet", "--force", "origin", "HEAD:main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def reset_hard(self, commit: str) -> None:
        git("reset", "--quiet", "--hard", commit, cwd=self.work)
