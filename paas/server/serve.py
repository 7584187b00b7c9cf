"""Run the control plane under gunicorn, in this process (what `paas up` does).

One worker with threads: pods of the local backend are children of the worker, and the
reconciler is one per control plane, so the worker must be one process.
"""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from paas.settings import Settings


def _worker_exit(server: Any, worker: Any) -> None:
    control = getattr(worker.wsgi, "extensions", {}).get("paas") if worker.wsgi else None
    if control is not None:
        control.close()


class ControlPlaneServer(BaseApplication):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        options = {
            "bind": f"{self.settings.host}:{self.settings.port}",
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
        from paas.server import create_app

        s = self.settings
        return create_app(
            {
                "data_dir": s.data_dir,
                "backend": s.backend,
                "host": s.host,
                "port": s.port,
                "token": s.token,
                "internal_url": s.internal_url,
            }
        )
