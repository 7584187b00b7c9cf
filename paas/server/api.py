"""HTTP API v1: JSON over bearer-token auth."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context

from paas import __version__, credentials
from paas.errors import InvalidInput
from paas.server import openapi
from paas.server.auth import require_bearer
from paas.supervisor import read_parts

bp = Blueprint("api", __name__, url_prefix=openapi.PREFIX)
PUBLIC = ("api.healthz", "api.openapi_document", "api.ca_certificate")  # answered without the token


def _control():
    return current_app.extensions["paas"]


def _json_body(empty: object = None) -> object:
    """The request's JSON (``empty`` without a body); None if it isn't JSON, which each route
    answers by saying what to send."""
    if not request.data:
        return empty
    try:
        return request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser goes: not JSON we take either
        return None


def _repo_password() -> str | None:
    """The repository password a create or apply gives apart from the manifest (`--password-file`),
    None without one."""
    header = request.headers.get(credentials.HEADER)
    return None if header is None else credentials.decode(header)


def _host() -> str:
    return request.host.rsplit(":", 1)[0] if request.host else "127.0.0.1"


@bp.before_request
def _auth():
    if request.endpoint not in PUBLIC:
        require_bearer()


@bp.get("/healthz")
def healthz():
    """Liveness of the platform's parts: 503 while `paas up`'s supervisor has one down."""
    control = _control()
    state = read_parts(control.settings.data_dir) or {}
    parts = {
        name: {k: v for k, v in part.items() if k != "pid"} for name, part in state.get("parts", {}).items()
    }
    down = sorted(name for name, part in parts.items() if part["state"] != "up")
    body = {
        "status": "ok" if not down else "degraded",
        "version": __version__,
        "backend": control.backend.name,
        "reconciled": control.reconciler.passes,  # passes so far: tests wait on it, not on time
        "parts": parts,
        "down": [f"{name}: down since {_when(parts[name]['since'])} ({parts[name]['last_exit']})" for name in down],
        "events": state.get("events", [])[-10:],
    }
    return jsonify(body), 200 if not down else 503


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@bp.get("/openapi.json")
def openapi_document():
    return jsonify(openapi.document())


@bp.get("/ca")
def ca_certificate():
    """The platform CA's certificate: public, as a CA certificate is (it signs; it is no secret)."""
    return Response(_control().ca_certificate(), mimetype="application/x-pem-file")


@bp.get("/apps")
def list_apps():
    return jsonify({"apps": _control().list_apps(_host())})


@bp.post("/apps")
def create_app():
    body = request.get_data(cache=False)
    if not body.strip():
        raise InvalidInput("send the manifest (YAML or JSON) as the request body")
    name = _control().create(body, _repo_password())
    return jsonify(_control().describe(name, _host())), 201


@bp.get("/apps/<name>")
def get_app(name: str):
    return jsonify(_control().describe(name, _host()))


@bp.put("/apps/<name>")
def apply_app(name: str):
    body = request.get_data(cache=False)
    if not body.strip():
        raise InvalidInput("send the changed manifest (YAML or JSON) as the request body")
    return jsonify(_control().apply(name, body, _repo_password()))


@bp.get("/apps/<name>/config")
def get_config(name: str):
    return jsonify(_control().config(name))


@bp.put("/apps/<name>/config")
def set_config(name: str):
    return jsonify(_control().set_config(name, _json_body()))


@bp.post("/apps/<name>/restart")
def restart(name: str):
    body = _json_body(empty={})
    if not isinstance(body, dict) or not isinstance(body.get("hard", False), bool):
        raise InvalidInput('send {"hard": true} for a new pod, or no body')
    return jsonify(_control().restart(name, body.get("hard", False)))


@bp.delete("/apps/<name>")
def delete_app(name: str):
    _control().delete(name)
    return jsonify({"deleted": name})


@bp.get("/apps/<name>/releases")
def releases(name: str):
    return jsonify({"releases": [r.to_json() for r in _control().releases(name)]})


@bp.post("/apps/<name>/rollback")
def rollback(name: str):
    body = _json_body(empty={})
    if not isinstance(body, dict):
        raise InvalidInput('send JSON like {"revision": "v3"}, or no body for the previous release')
    target = body.get("revision")
    if target is not None and not isinstance(target, str | int):
        raise InvalidInput("revision must be a release number (3 or v3) or a commit hash")
    wait = body.get("wait", True)
    if not isinstance(wait, bool):
        raise InvalidInput("wait must be true (answer once the release serves) or false (at once)")
    release, original = _control().rollback(name, None if target is None else str(target), wait=wait)
    return jsonify(release.to_json() | {"rolls_back_to": original.to_json()}), 201


@bp.get("/apps/<name>/certs")
def certificates(name: str):
    return jsonify(_control().certificates(name))


@bp.put("/apps/<name>/certs")
def add_certificate(name: str):
    body = _json_body()
    if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("certificate", "key")):
        raise InvalidInput('send JSON {"certificate": "PEM chain", "key": "PEM private key"}')
    return jsonify(_control().add_certificate(name, body["certificate"], body["key"]))


@bp.delete("/apps/<name>/certs")
def remove_certificate(name: str):
    return jsonify(_control().remove_certificate(name))


@bp.get("/apps/<name>/processes")
def processes(name: str):
    return jsonify({"processes": _control().processes(name)})


@bp.get("/apps/<name>/export")
def export(name: str):
    args = request.args
    if args.get("format", "kubernetes") != "kubernetes":
        raise InvalidInput("format must be kubernetes (the only export there is)")
    text = _control().export(name, args.get("kube_version", ""), args.get("image_prefix"), args.get("namespace"),
                             args.get("host", ""))
    return Response(text, mimetype="application/yaml")


@bp.get("/apps/<name>/logs")
def logs(name: str):
    follow = request.args.get("follow", "0").lower() in ("1", "true", "yes")
    try:
        tail = int(request.args.get("tail", "200"))
    except ValueError:
        raise InvalidInput("tail must be a whole number of lines") from None
    if not 0 <= tail <= 100_000:
        raise InvalidInput("tail must be between 0 and 100000")
    lines = _control().logs(name, follow=follow, tail=tail)
    body = stream_with_context(line + "\n" for line in lines)
    return Response(body, mimetype="text/plain", headers={"X-Accel-Buffering": "no"})
