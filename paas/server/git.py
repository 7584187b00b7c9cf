"""Git smart HTTP for hosted repos, served by `git http-backend` (push and clone).

Auth is HTTP basic with the admin token as the password (any user name); a pod's own
deploy token may only fetch its app's repo. Error bodies are text/plain because git
shows them to the user as ``remote: …`` lines.
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import threading
from collections.abc import Iterator

from flask import Blueprint, Response, current_app, request

from paas.errors import AppNotFound, InvalidAppName
from paas.names import check_app_name
from paas.server.auth import admin_token, same

bp = Blueprint("git", __name__, url_prefix="/git")
log = logging.getLogger("paas.git")
CHUNK = 64 * 1024
SERVICES = {"git-upload-pack", "git-receive-pack"}


def _text(status: int, message: str, **headers: str) -> Response:
    return Response(f"paas: {message}\n", status=status, mimetype="text/plain", headers=headers)


def _password() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(value).decode().partition(":")[2]
    except (ValueError, UnicodeDecodeError):
        return None


def _service() -> str | None:
    if request.method == "GET":
        return request.args.get("service")
    return request.path.rsplit("/", 1)[-1]


@bp.route("/<name>.git/<path:rest>", methods=["GET", "POST"])
def serve(name: str, rest: str):
    control = current_app.extensions["paas"]
    try:
        app = control.store.get_app(check_app_name(name))
    except (InvalidAppName, AppNotFound) as e:
        return _text(404, e.message)
    if not app.manifest.hosted:
        return _text(404, f"app {name!r} deploys from {app.manifest.source.repo}, not from a push")
    service = _service()
    if rest not in ("info/refs", "git-upload-pack", "git-receive-pack") or service not in SERVICES:
        return _text(404, "only git's smart HTTP protocol is served here")
    password = _password()
    writer = same(password, admin_token())
    reader = writer or same(password, app.deploy_token)
    if not (writer or (reader and service == "git-upload-pack")):
        challenge = {"WWW-Authenticate": 'Basic realm="paas"'}
        return _text(401, "authentication failed: use the paas token as the password", **challenge)
    pushing = rest == "git-receive-pack"
    before = control.repos.head(name, app.manifest.source.ref) if pushing else None
    after = (lambda: control.record_push(name, before)) if pushing else None
    return _backend(control.repos.root, f"/{name}.git/{rest}", after)


def _backend(root, path_info: str, after) -> Response:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_PROJECT_ROOT": str(root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": path_info,
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": request.query_string.decode(),
        "CONTENT_TYPE": request.content_type or "",
        "REMOTE_USER": "paas",
        "REMOTE_ADDR": request.remote_addr or "",
        "GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
        "HTTP_CONTENT_ENCODING": request.headers.get("Content-Encoding", ""),
    }
    if request.content_length is not None:
        env["CONTENT_LENGTH"] = str(request.content_length)
    proc = subprocess.Popen(
        ["git", "http-backend"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    feeder = threading.Thread(target=_feed, args=(request.stream, proc.stdin), daemon=True)
    feeder.start()
    threading.Thread(target=_log_stderr, args=(proc.stderr,), daemon=True).start()
    status, headers = _read_cgi_headers(proc.stdout)

    def body() -> Iterator[bytes]:
        try:
            while chunk := proc.stdout.read1(CHUNK):
                yield chunk
            proc.wait()
            feeder.join()
            # Still inside the response: the push is answered only once the release is stored.
            if after is not None and proc.returncode == 0:
                after()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    return Response(body(), status=status, headers=headers, direct_passthrough=True)


def _feed(source, sink) -> None:
    try:
        while chunk := source.read(CHUNK):
            sink.write(chunk)
    except (BrokenPipeError, OSError):
        pass
    finally:
        try:
            sink.close()
        except OSError:
            pass


def _log_stderr(stream) -> None:
    for line in stream:
        log.warning("git http-backend: %s", line.decode("utf-8", "replace").rstrip())


def _read_cgi_headers(stdout) -> tuple[int, list[tuple[str, str]]]:
    status, headers = 200, []
    for raw in iter(stdout.readline, b""):
        line = raw.decode("latin-1").rstrip("\r\n")
        if not line:
            break
        key, _, value = line.partition(":")
        if key.lower() == "status":
            status = int(value.strip().split()[0])
        else:
            headers.append((key.strip(), value.strip()))
    return status, headers
