"""The control plane under gunicorn: ``python -m paas.server.serve``, the API part `paas up`
supervises (`paas.supervisor`).

One worker with threads: the reconciler is one per control plane, so the worker must be one
process. Its settings come from `paas up` in ``PAAS_SERVE`` (JSON, removed from the
environment once read: it holds the token), and with them the descriptor of the data
directory's lock (``PAAS_LOCK_FD``), which the worker inherits and so holds.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import fields
from typing import Any

from gunicorn.app.base import BaseApplication

from paas import lock
from paas.settings import Settings

ENV = "PAAS_SERVE"


def _worker_exit(server: Any, worker: Any) -> None:
    wsgi = getattr(worker, "wsgi", None)  # None when the worker failed to boot
    control = getattr(wsgi, "extensions", {}).get("paas") if wsgi else None
    if control is not None:
        control.close()


class ControlPlaneServer(BaseApplication):
    def __init__(self, settings: Settings, listeners: tuple[int, ...]) -> None:
        """``listeners``: descriptors of the sockets to serve, bound and listening (`paas up`
        keeps them open: requests that arrive while the API restarts wait in their queue)."""
        self.settings = settings
        self.listeners = listeners
        super().__init__()

    def load_config(self) -> None:
        options = {
            "bind": [f"fd://{fd}" for fd in self.listeners],
            "workers": 1,
            "worker_class": "gthread",
            "threads": 32,
            "timeout": 120,
            "graceful_timeout": 20,
            "worker_exit": _worker_exit,
            "proc_name": "paas",
            # gunicorn >= 25.1 serves a control socket that can add workers: two reconcilers.
            "control_socket_disable": True,
        }
        for key, value in options.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self):
        from paas.server.app import create_app

        return create_app({f.name: getattr(self.settings, f.name) for f in fields(self.settings)})


def environment(settings: Settings, listeners: tuple[int, ...], lock_fd: int) -> dict[str, str]:
    """What `paas up` gives the API process to start with (it passes it those descriptors)."""
    values = {f.name: str(getattr(settings, f.name)) for f in fields(settings)}
    return {ENV: json.dumps({"settings": values, "listeners": list(listeners)}), "PAAS_LOCK_FD": str(lock_fd)}


def main() -> int:
    given = json.loads(os.environ.pop(ENV))
    settings = Settings.load(given["settings"])
    lock.adopt(settings.data_dir, int(os.environ.pop("PAAS_LOCK_FD")))
    ControlPlaneServer(settings, tuple(int(fd) for fd in given["listeners"])).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
