"""The router's table: which host name is which app, where the app listens, whether it
serves and whether it speaks TLS — made by the control plane after every reconcile pass
and written to a file in the data directory, which the router (its own process) reads.

A file, not an API: the router keeps routing with the table it last read while the
control plane's API restarts, and it never needs the token.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from paas.appspec import AppSpec
from paas.backends.base import PodStatus
from paas.sidecars import HTTPS

TABLE_FILE = "routes.json"


def table_path(data_dir: Path) -> Path:
    return data_dir / "router" / TABLE_FILE


@dataclass(frozen=True)
class Route:
    address: str  # where the app's published port is reached from the router
    port: int
    tls: bool  # its port speaks TLS (the https sidecar fronts it) as well as plain HTTP
    serving: bool  # a release serves: otherwise the router answers 503 for it

    def to_json(self) -> dict:
        return {"address": self.address, "port": self.port, "tls": self.tls, "serving": self.serving}


def build(specs: list[AppSpec], pods: dict[str, PodStatus], address: str, domain: str) -> dict:
    """The table as JSON, from the apps' specs and the reconciler's snapshot of their pods.
    ``address``: where apps' ports are published; a pod that says where the control plane
    reaches it instead (`PodStatus.address`) is reached there."""
    routes: dict[str, dict] = {}
    # An app's own NAME.<domain> is its own, even where another app stored before the rules
    # of `hosts` (paas.hosts) claims it; of other names, the first app to claim one keeps it.
    names: dict[str, str] = {f"{spec.name}.{domain}": spec.name for spec in specs}
    for spec in specs:
        pod = pods.get(spec.name)
        serving = bool(pod is not None and pod.running and pod.runtime.serving)
        where = pod.address if pod is not None and pod.address else address
        routes[spec.name] = Route(where, spec.port, spec.has(HTTPS), serving).to_json()
        for host in spec.hosts:
            names.setdefault(host.lower(), spec.name)
    return {"version": 1, "domain": domain, "hosts": names, "apps": routes}


class TableWriter:
    """Writes the table when it changed, atomically (the router never reads half a file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._written = ""

    def write(self, table: dict) -> bool:
        text = json.dumps(table, sort_keys=True)
        if text == self._written:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, self.path)
        self._written = text
        return True
