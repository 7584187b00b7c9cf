"""The web console: server-rendered pages whose parts are HTML fragments fetched with htmx.

The pages themselves (``/``, ``/apps/<name>``) hold no data and need no token; every fragment
and action under ``/console/`` is authorised like the API, by the bearer token the tab keeps
in ``sessionStorage`` and ``console.js`` adds to each request, so the token never travels in
a URL or a cookie. Each page keeps one change stream open (``/console/events``): it says when
the store or the reconciler's snapshot changed, and the page's fragments then fetch again —
nothing polls the backend per app. Every value is rendered as text by Jinja's escaping.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, render_template, request, stream_with_context

from paas import store as st
from paas.control import ControlPlane
from paas.errors import InvalidInput, PaasError
from paas.names import check_app_name
from paas.server.auth import require_bearer

bp = Blueprint("console", __name__)

CHANGE_CHECK = 0.2  # seconds between two readings of the control plane's change counters
HEARTBEAT = 15.0  # a comment line this often keeps proxies from closing an idle stream
STREAM_LIMIT = 600.0  # a stream ends after this long; the page opens the next one
BADGES = {  # state word -> how it looks: serving / deploying / failed / error / stopped
    "serving": "serving",
    "deploying": "deploying",
    "syncing": "deploying",
    "starting": "deploying",
    "pending": "stopped",
    "waiting for a push": "stopped",
    "restarting": "error",
    "failed": "failed",
    "error": "error",
}


def _control() -> ControlPlane:
    return current_app.extensions["paas"]


def _host() -> str:
    return request.host.rsplit(":", 1)[0] if request.host else "127.0.0.1"


@bp.before_request
def _auth() -> None:
    if request.path.startswith("/console/"):
        require_bearer()


@bp.app_template_filter("ago")
def ago(at: float | None) -> str:
    """``at`` (seconds since the epoch) as a person says it: "12 s ago", "3 min ago"."""
    if not at:
        return ""
    seconds = max(0, int(time.time() - at))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


@bp.app_template_filter("exact")
def exact(at: float | None) -> str:
    return datetime.fromtimestamp(at or 0, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@bp.app_template_filter("iso")
def iso(at: float | None) -> str:
    return datetime.fromtimestamp(at or 0, UTC).isoformat()


@bp.app_template_filter("fields")
def fields(details: list[str]) -> list[tuple[str, str]]:
    """A manifest's problems as (field path, problem): "port: must be …" -> ("port", "must be …")."""
    pairs = []
    for detail in details:
        path, sep, problem = detail.partition(": ")
        pairs.append((path, problem) if sep and " " not in path else ("", detail))
    return pairs


@bp.app_context_processor
def _helpers() -> dict[str, Any]:
    return {"badge": lambda state: BADGES.get(state, "stopped"), "served": st.SERVED}


# pages


@bp.get("/")
def index() -> str:
    return render_template("console/apps.html")


@bp.get("/apps/<name>")
def app_page(name: str) -> str:
    return render_template("console/app.html", name=check_app_name(name))


# fragments


def _remote(name: str) -> str:
    return f"{request.host_url}git/{name}.git"


@bp.get("/console/apps")
def apps() -> str:
    return render_template("console/_apps.html", apps=_control().list_apps(_host()), remote=_remote)


@bp.get("/console/apps/<name>/overview")
def overview(name: str) -> str:
    return render_template("console/_overview.html", app=_control().describe(name, _host()), remote=_remote)


@bp.get("/console/apps/<name>/releases")
def releases(name: str) -> str:
    return render_template("console/_releases.html", name=name, releases=_control().releases(name))


@bp.get("/console/apps/<name>/deploy")
def deploy(name: str) -> str:
    return render_template("console/_deploy.html", app=_control().describe(name, _host()))


@bp.get("/console/apps/<name>/config")
def config(name: str) -> str:
    return render_template("console/_config.html", config=_control().config(name))


@bp.get("/console/apps/<name>/processes")
def processes(name: str) -> str:
    try:
        found, problem = _control().processes(name), None
    except PaasError as e:
        found, problem = [], e.message
    return render_template("console/_processes.html", processes=found, problem=problem)


# actions: each answers with the fragment it changed (or the form with its errors)


@bp.post("/console/apps")
def create() -> tuple[str, int, dict[str, str]] | tuple[str, int]:
    text = request.form.get("manifest", "")
    try:
        if not text.strip():
            raise InvalidInput("paste the app's manifest (YAML or JSON)")
        name = _control().create(text.encode())
    except PaasError as e:
        return render_template("console/_new.html", manifest=text, error=e), 422
    return "", 201, {"HX-Redirect": f"/apps/{name}"}


@bp.post("/console/apps/<name>/config")
def set_config(name: str) -> tuple[str, int]:
    unset = request.form.get("unset")
    key = unset if unset is not None else request.form.get("key", "").strip()
    try:
        if not key:
            raise InvalidInput("give the variable a key")
        _control().set_config(name, {key: None if unset is not None else request.form.get("value", "")})
    except PaasError as e:
        return render_template("console/_config.html", config=_control().config(name), error=e,
                               key=key, value=request.form.get("value", "")), 422
    return config(name), 200


@bp.post("/console/apps/<name>/rollback")
def rollback(name: str) -> tuple[str, int]:
    try:
        _control().rollback(name, request.form.get("revision") or None, wait=False)
    except PaasError as e:
        return render_template("console/_releases.html", name=name, releases=_control().releases(name),
                               error=e), 422
    return releases(name), 200


@bp.post("/console/apps/<name>/restart")
def restart(name: str) -> tuple[str, int]:
    hard = request.form.get("hard") == "1"
    try:
        done = _control().restart(name, hard)
    except PaasError as e:
        return render_template("console/_said.html", error=e), 422
    return render_template("console/_said.html", said=f"{'pod recreated' if hard else 'restarted'} in "
                                                      f"{done.get('seconds', 0):.1f} s"), 200


@bp.post("/console/apps/<name>/delete")
def delete(name: str) -> tuple[str, int, dict[str, str]] | tuple[str, int]:
    typed = request.form.get("confirm", "")
    if typed != name:
        return render_template("console/_said.html",
                               error=InvalidInput(f"type the app's name ({name}) to delete it")), 422
    try:
        _control().delete(name)
    except PaasError as e:
        return render_template("console/_said.html", error=e), 422
    return "", 200, {"HX-Redirect": "/"}


# the change stream


@bp.get("/console/events")
def events() -> Response:
    control = _control()

    def stream() -> Iterator[str]:
        seen, quiet, began = control.changes(), time.monotonic(), time.monotonic()
        yield "retry: 1000\n\n"
        while time.monotonic() - began < STREAM_LIMIT and not control.closing.wait(CHANGE_CHECK):
            now = control.changes()
            if now != seen:
                seen, quiet = now, time.monotonic()
                yield f"event: changed\ndata: {now[0]}.{now[1]}\n\n"
            elif time.monotonic() - quiet > HEARTBEAT:
                quiet = time.monotonic()
                yield ": still here\n\n"

    return Response(stream_with_context(stream()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
