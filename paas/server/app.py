"""The control plane's Flask application factory (gunicorn calls ``create_app()``)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from paas import lock
from paas.backends import make_backend
from paas.control import ControlPlane
from paas.errors import PaasError
from paas.settings import Settings

# Every answer, the console's pages above all: nothing but the control plane's own scripts,
# styles and requests; never framed; types as declared; no referrer with a page's path.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def create_app(config: dict[str, Any] | None = None, start: bool = True) -> Flask:
    """Build the app; ``config`` overrides settings (tests), ``start`` runs the reconciler."""
    settings = Settings.load(config).with_token()
    if start:
        lock.acquire(settings.data_dir, settings.url)  # one control plane per data directory
    app = Flask(__name__)
    app.config["PAAS_SETTINGS"] = settings
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    control = ControlPlane(settings, make_backend(settings))
    app.extensions["paas"] = control
    if start:
        control.start()

    from paas.server import api, console, git

    app.register_blueprint(api.bp)
    app.register_blueprint(git.bp)
    app.register_blueprint(console.bp)

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        if response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.errorhandler(PaasError)
    def _paas_error(e: PaasError):
        return jsonify(e.to_json()), e.status

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        return jsonify({"error": e.description or e.name, "details": []}), e.code

    return app


def control_plane(app: Flask) -> ControlPlane:
    return app.extensions["paas"]
