"""Git smart HTTP for hosted repos, served by `git http-backend` (push and clone).

Auth is HTTP basic with the admin token as the password (any user name); a pod's own
deploy token may only fetch its app's repo. Error bodies are text/plain because git
shows them to the user as ``remote: …`` lines.

A push is answered only once its deploy has an outcome: the deploy's steps follow git's
own progress as ``remote: paas: …`` lines, then ``live at <url>``; or the reason it failed,
the branch is moved back to where it was (so it holds the code that serves, as Heroku and
Dokku keep it) and git's report says ``[remote rejected]``, so ``git push`` fails.
``git push -o nowait`` returns once the release is stored. A push the data directory has no
room for fails at once saying how much is left, whether git itself couldn't store its
objects, the store couldn't record it, or too little is left for a deploy.
"""

from __future__ import annotations

import base64
import logging
import os
import queue
import subprocess
import threading
from collections.abc import Iterator

from flask import Blueprint, Response, current_app, request

from paas import diskspace
from paas import store as st
from paas.deploys import Outcome
from paas.errors import AppNotFound, InvalidAppName, PaasError
from paas.names import check_app_name
from paas.server import pktline
from paas.server.auth import admin_token, same
from paas.status import excerpt

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
        return _text(404, f"app {name!r} deploys from {app.manifest.source.clone_url}, not from a push")
    service = _service()
    if rest not in ("info/refs", "git-upload-pack", "git-receive-pack") or service not in SERVICES:
        return _text(404, "only git's smart HTTP protocol is served here")
    password = _password()
    writer = same(password, admin_token())
    reader = writer or same(password, app.deploy_token)
    if not (writer or (reader and service == "git-upload-pack")):
        challenge = {"WWW-Authenticate": 'Basic realm="paas"'}
        return _text(401, "authentication failed: use the paas token as the password", **challenge)
    if rest != "git-receive-pack":
        return _backend(control.repos.root, f"/{name}.git/{rest}")
    return _push(control, app, f"/{name}.git/{rest}")


def _push(control, app, path_info: str) -> Response:
    """A push: receive-pack's answer, held back until the deploy has an outcome to report."""
    deploy = Push(control, app, request.host)
    deploy.lock.acquire()  # one push per app at a time, until this answer ends
    try:
        notes = control.repos.push_notes(app.name)
    except OSError as e:
        deploy.lock.release()
        if diskspace.is_full(e):
            return _text(507, diskspace.no_space(control.repos.root).message)
        raise
    try:
        deploy.before = control.repos.head(app.name, app.manifest.source.ref)
        tags = {"PAAS_TAGS": app.manifest.source.tags}  # the update hook's rule, as the manifest is now
        proc, status, headers = _start_backend(control.repos.root, path_info, notes.env | tags)
    except BaseException:
        notes.remove()
        deploy.lock.release()
        raise

    def body() -> Iterator[bytes]:
        try:
            answer = yield from pktline.read_answer(proc.stdout)
            proc.wait()
            deploy.options = notes.options()
            for ref, reason in notes.refused().items():  # git's own words for what a hook refused
                answer.report = pktline.reword(answer.report, ref, reason)
            if answer.report and answer.report[0] != "unpack ok":
                yield from deploy.not_stored()
            elif proc.returncode == 0:
                yield from deploy.run(answer)
            yield pktline.finish(answer)
        except pktline.ProtocolError as e:
            log.warning("push to %s: unreadable answer from git receive-pack: %s", app.name, e)
        finally:
            notes.remove()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            deploy.lock.release()

    return Response(body(), status=status, headers=headers, direct_passthrough=True)


class Push:
    """What the pusher reads after git's own lines: the deploy's steps and its outcome."""

    def __init__(self, control, app, host: str) -> None:
        self.control, self.app = control, app
        self.url = control.urls_of(app, host.rsplit(":", 1)[0] if host else None)[0]
        self.lock = control.deploys.push_lock(app.name)
        self.before: str | None = None
        self.options: list[str] = []

    def not_stored(self) -> Iterator[bytes]:
        """git could not store the push's objects: with the data directory short of room,
        say so (git's own lines say only what it failed to write)."""
        short = self.control.deploys.room.shortage() if self.control.deploys.room else None
        if short is not None:
            yield pktline.progress(f"paas: {short.message}: nothing of this push was stored")

    def run(self, answer: pktline.Answer) -> Iterator[bytes]:
        ref = f"refs/heads/{self.app.manifest.source.ref}"
        if f"ok {ref}" not in answer.report:
            return  # the branch wasn't updated (refused, or only tags pushed): nothing to deploy
        say = lambda text: pktline.progress(f"paas: {text}")  # noqa: E731
        try:
            release = self.control.deploys.record_push(self.app, self.before)
        except PaasError as e:  # the store can't record it (a full disk): nothing deploys
            yield say(f"error: {e.message}")
            yield from (say(line) for line in e.details)
            pushed = self.control.repos.head(self.app.name, self.app.manifest.source.ref)
            yield from self._branch_back(answer, ref, pushed, self.control.store.served(self.app.name), "not recorded")
            return
        if release is None:
            return
        yield say(f"v{release.number} stored ({release.revision[:12]} {release.message!r})")
        if "nowait" in self.options:
            yield say(f"deploying without waiting (-o nowait): `paas status {self.app.name}` shows the outcome")
            return
        lines: queue.Queue[str | Outcome] = queue.Queue()

        def wait() -> None:
            try:
                outcome = self.control.deploys.await_outcome(self.app.name, release, lines.put)
            except Exception as e:  # the app was deleted meanwhile, the store closed: end the push
                log.warning("push to %s: waiting for the outcome failed: %s", self.app.name, e)
                outcome = Outcome(release, 0.0, None)
            lines.put(outcome)

        threading.Thread(target=wait, name=f"push-{self.app.name}", daemon=True).start()
        while isinstance(line := lines.get(), str):
            yield say(line)
        outcome = line
        if outcome.status == st.LIVE:
            yield say(f"v{release.number} live at {self.url} in {outcome.seconds:.1f} s")
        elif outcome.status == st.PENDING:
            yield say(f"v{release.number} still deploying after {outcome.seconds:.0f} s: `paas status {self.app.name}` will tell")
        else:
            yield from self._failed(answer, ref, outcome)

    def _failed(self, answer: pktline.Answer, ref: str, outcome: Outcome) -> Iterator[bytes]:
        release = outcome.release
        first, _, rest = release.reason.partition("\n")
        yield pktline.progress(f"paas: {release.status}: {first}")
        lines = rest.strip("\n").splitlines()
        if lines:
            shown = excerpt(lines)
            yield pktline.progress("\n".join(f"paas:   {line}" for line in shown))
            if len(shown) < len(lines):
                yield pktline.progress(f"paas: (all {len(lines)} lines: `paas status {self.app.name}`)")
        yield from self._branch_back(answer, ref, release.revision, outcome.serving, f"deploy {release.status}")

    def _branch_back(
        self, answer: pktline.Answer, ref: str, pushed: str | None, serving: st.Release | None, what: str
    ) -> Iterator[bytes]:
        """The push didn't deploy: the branch goes back from ``pushed`` to where it was (so it
        holds the code that serves) and git's report refuses the ref, so `git push` fails."""
        keeps = f"v{serving.number} keeps serving" if serving else "nothing serves yet"
        if pushed is not None and self.control.deploys.undo_push(self.app, pushed, self.before):
            kept = self.before[:12] if self.before else "nothing (it was the first push)"
            yield pktline.progress(f"paas: {keeps}; the branch stays at {kept}")
        else:  # git could not write the ref back (a full disk): say where it is
            yield pktline.progress(f"paas: {keeps}; the branch could not be moved back from {(pushed or '')[:12]}")
        answer.report = pktline.reject(answer.report, ref, f"{what}; {keeps}")


def _backend(root, path_info: str) -> Response:
    proc, status, headers = _start_backend(root, path_info)

    def body() -> Iterator[bytes]:
        try:
            while chunk := proc.stdout.read1(CHUNK):
                yield chunk
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    return Response(body(), status=status, headers=headers, direct_passthrough=True)


def _start_backend(root, path_info: str, extra_env: dict[str, str] | None = None):
    """``git http-backend`` fed the request; its process, status and headers."""
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
    } | (extra_env or {})
    if request.content_length is not None:
        env["CONTENT_LENGTH"] = str(request.content_length)
    proc = subprocess.Popen(
        ["git", "http-backend"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    threading.Thread(target=_feed, args=(request.stream, proc.stdin), daemon=True).start()
    threading.Thread(target=_log_stderr, args=(proc.stderr,), daemon=True).start()
    status, headers = _read_cgi_headers(proc.stdout)
    return proc, status, headers


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
