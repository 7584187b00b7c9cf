"""Run the control plane under gunicorn, in this process (what `paas up` does).

One worker with threads: pods of the local backend are children of the worker, and the
reconciler is one per control plane, so the worker must be one process.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from gunicorn.app.base import BaseApplication

from paas.settings import Settings


def _worker_exit(server: Any, worker: Any) -> None:
    wsgi = getattr(worker, "wsgi", None)  # None when the worker failed to boot
    control = getattr(wsgi, "extensions", {}).get("paas") if wsgi else None
    if control is not None:
        control.close()


class ControlPlaneServer(BaseApplication):
    def __init__(self, settings: Settings, also_on: tuple[str, ...] = ()) -> None:
        """``also_on``: more addresses to listen on besides ``settings.host`` (the Docker bridge's)."""
        self.settings = settings
        self.addresses = (settings.host, *also_on)
        super().__init__()

    def load_config(self) -> None:
        options = {
            "bind": [f"{address}:{self.settings.port}" for address in self.addresses],
            "workers": 1,
            "worker_class": "gthread",
            "threads": 32,
            "timeout": 120,
            "graceful_timeout": 20,
            "worker_exit": _worker_exit,
            "proc_name": "paas",
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self):
        from paas.server.app import create_app

        return create_app({f.name: getattr(self.settings, f.name) for f in fields(self.settings)})
