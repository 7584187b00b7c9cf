"""The control plane's web side: the Flask app (`paas.server.app`), its blueprints, and the
gunicorn server `paas up` runs (`paas.server.serve`).

`create_app` is looked up lazily, so that importing `paas.server.serve` — what gunicorn's
master process does — doesn't load Flask and the rest of the app, which only the worker
runs (`gunicorn 'paas.server:create_app()'` works as before).
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("create_app", "control_plane"):
        from paas.server import app

        return getattr(app, name)
    raise AttributeError(name)
